//! Can a vision tower of a given size learn what Chain-of-Focus asks about?
//!
//! The bundled models read colour but never learned shape (docs/bundled-model.md,
//! "The focus model"): is that the 2-layer, 64-wide tower, the view geometry,
//! or the route through the language model? This probe trains a Qwen2-VL
//! vision tower plus one linear layer per task over its merged tokens to
//! classify, directly, what the recipe's views show: the target's shape or
//! colour in the trace's crop at the crop budget (`crop:shape`,
//! `crop:colour`), or in the first view (`first:shape`, `first:colour`), and
//! the grid cell that holds the target (`first:cell`, what a zoom box must
//! know). Fresh images every step (never repeated); accuracy per image size
//! on a fixed held-out set from another seed.
//!
//! With `--graft OUT` the trained tower replaces the `--init-from`
//! checkpoint's tower in a copy written to `OUT`: a vision-pretrained start
//! for `recipes zoom-base` (docs/bundled-model.md). The probe trains on
//! image stream `--seed` and validates on `--seed + 1,000,000`; the recipe
//! tests on `seed + 1,000,003`, so a grafting run must keep `--seed` below
//! 1,000,003 to never train on a recipe test image (checked).
//!
//! ```sh
//! cargo run --release -p recipes --example vision_probe -- --tasks crop:shape --sizes 112
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use recipes::base_model::write_checkpoint;
use recipes::chain_of_focus::episode::FocusEnv;
use recipes::chain_of_focus::task::{
    example_at, target_cell, zoom_box_grid, zoom_turn_text, TaskSpec,
};
use recipes::chain_of_focus::{make_env, task_spec, trace_crop, ChainOfFocusArgs};
use recipes::single_turn::set_from;
use recipes::TrainBackend;
use vlrl::data::synth::draw::{Shape, NAMED_COLORS};
use vlrl::qwen::{Qwen2VL, VisionTower};
use vlrl::vision::{Qwen2VisionConfig, Qwen2VisionTower};

#[derive(Parser, Debug)]
struct Args {
    /// `view:label` pairs, comma-separated; views `crop`, `first`; labels
    /// `shape`, `colour`, `cell`.
    #[arg(long, value_delimiter = ',', default_value = "crop:shape")]
    tasks: Vec<String>,
    /// `pooled`: shape and colour heads score each merged token and keep the
    /// best (position-free); `flat`: one weight per token position and
    /// feature (the first probe table).
    #[arg(long, value_enum, default_value_t = Head::Pooled)]
    head: Head,
    /// The `cell` head. `flat` gets each token's position from its weights,
    /// so it passes even when the features do not say where a token is;
    /// `pooled` scores every token alone, so it only passes when the
    /// target's own token knows where it lies in the image — what a language
    /// model needs to write the box, since its rotary positions barely tell
    /// image columns apart (the tiny models' `w` section turns by under
    /// 0.004 rad per token).
    #[arg(long, value_enum, default_value_t = Head::Flat)]
    cell_head: Head,
    /// Tower blocks (the bundled models: 2).
    #[arg(long, default_value_t = 2)]
    depth: usize,
    /// Tower width (the bundled models: 64).
    #[arg(long, default_value_t = 64)]
    embed: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Start from this checkpoint's tower instead of random weights (its
    /// architecture then wins over `--depth/--embed/--heads`).
    #[arg(long)]
    init_from: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Views per view kind and step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Image sides, comma-separated (default: the recipe's).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<u32>>,
    /// Held-out accuracy every this many steps (0 = only at the end).
    #[arg(long, default_value_t = 200)]
    eval_every: usize,
    #[arg(long, default_value_t = 256)]
    eval_size: usize,
    #[arg(long, default_value_t = 5)]
    seed: u64,
    /// Override the recipe's `crop_pixels` (the zoomed view's pixel budget).
    #[arg(long)]
    crop_pixels: Option<usize>,
    /// Override the recipe's `box_grid` (trace boxes span 1.5 cells of it).
    #[arg(long)]
    box_grid: Option<u32>,
    /// Override the recipe's `target_radius`.
    #[arg(long)]
    target_radius: Option<f32>,
    /// Write the first held-out crops as PNG here (as cut, before the
    /// processor resizes them to the budget).
    #[arg(long)]
    dump: Option<std::path::PathBuf>,
    /// Write `--init-from` with the trained tower here.
    #[arg(long, requires = "init_from")]
    graft: Option<std::path::PathBuf>,
}

/// The recipe's own defaults (`recipes/configs/chain-of-focus.toml`).
#[derive(Parser, Debug)]
struct RecipeDefaults {
    #[command(flatten)]
    recipe: ChainOfFocusArgs,
}

/// How a task's linear head reads the merged tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Head {
    Pooled,
    Flat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Crop,
    First,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Shape,
    Colour,
    Cell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Task {
    view: View,
    label: Label,
}

impl Task {
    fn parse(text: &str) -> Result<Self> {
        let (view, label) = text
            .split_once(':')
            .with_context(|| format!("task {text:?}: expected view:label"))?;
        let view = match view {
            "crop" => View::Crop,
            "first" => View::First,
            other => bail!("task {text:?}: unknown view {other:?} (crop, first)"),
        };
        let label = match label {
            "shape" => Label::Shape,
            "colour" => Label::Colour,
            "cell" => Label::Cell,
            other => bail!("task {text:?}: unknown label {other:?} (shape, colour, cell)"),
        };
        Ok(Self { view, label })
    }
}

#[derive(Module, Debug)]
struct Probe<B: Backend> {
    tower: Qwen2VisionTower<B>,
    /// One per task, in `--tasks` order.
    heads: Vec<Linear<B>>,
}

impl<B: Backend> Probe<B> {
    /// Merged tokens of each view: `[views, tokens, width]` (every view of a
    /// kind has the same number of tokens).
    fn features(&self, pixels: Tensor<B, 2>, grid: &[[usize; 3]]) -> Result<Tensor<B, 3>> {
        let merged = self.tower.forward(pixels, grid)?.merged;
        let [tokens, width] = merged.dims();
        let views = grid.len().max(1);
        Ok(merged.reshape([views, tokens / views, width]))
    }

    /// Logits `[views, classes]` of task `t`. A head that pools scores every
    /// token and keeps each class's best, so it reads an object wherever it
    /// lies in the view; a flat head weighs every token position on its own
    /// (what `cell` needs, and what the first probe table used for all).
    fn logits(&self, t: usize, pooled: bool, features: Tensor<B, 3>) -> Tensor<B, 2> {
        let [views, tokens, width] = features.dims();
        if pooled {
            let scores = self.heads[t].forward(features);
            let classes = scores.dims()[2];
            scores.max_dim(1).reshape([views, classes])
        } else {
            self.heads[t].forward(features.reshape([views, tokens * width]))
        }
    }
}

/// One view with every label.
struct Item {
    pixels: Vec<f32>,
    patch_dim: usize,
    grid: [usize; 3],
    /// Indexed by `label_index`.
    labels: [usize; 3],
    size: u32,
}

fn label_index(label: Label) -> usize {
    match label {
        Label::Shape => 0,
        Label::Colour => 1,
        Label::Cell => 2,
    }
}

struct Source {
    env: Arc<FocusEnv>,
    spec: TaskSpec,
    sizes: Vec<u32>,
    box_grid: u32,
    dump: Option<std::path::PathBuf>,
}

impl Source {
    fn item(&self, view: View, index: u64, seed: u64) -> Result<Item> {
        let size = self.sizes[index as usize % self.sizes.len()];
        let ex = example_at(size, index, seed, self.spec)?;
        let shape = Shape::ALL
            .iter()
            .position(|s| s.name() == ex.shape)
            .with_context(|| format!("unknown shape {:?}", ex.shape))?;
        let colour = NAMED_COLORS
            .iter()
            .position(|(name, _)| *name == ex.color)
            .with_context(|| format!("unknown colour {:?}", ex.color))?;
        let [column, row] = target_cell(ex.target_box, ex.size, self.box_grid);
        let cell = (row * self.box_grid.max(1) + column) as usize;
        let (_, extra) = match view {
            View::Crop => {
                let frame = self.env.view_frame(&ex.image)?;
                let b = zoom_box_grid(ex.target_box, ex.size, self.box_grid);
                let crop = trace_crop(&self.env, frame, &ex, &zoom_turn_text(b))?;
                if let Some(dir) = self.dump.as_ref().filter(|_| index < 16) {
                    std::fs::create_dir_all(dir)?;
                    crop.save(
                        dir.join(format!("{index:02}-{size}-{}-{}.png", ex.shape, ex.color)),
                    )?;
                }
                self.env.crop_prompt(Arc::new(crop), "probe")?
            }
            View::First => self.env.prompt(ex.image.clone(), "probe")?,
        };
        let v = &extra.vision;
        let grid = *v.grid_thw.first().context("view without an image grid")?;
        Ok(Item {
            pixels: v.pixel_values.clone(),
            patch_dim: v.patch_dim,
            grid,
            labels: [shape, colour, cell],
            size,
        })
    }
}

fn pixels_of<B: Backend>(items: &[Item], device: &B::Device) -> (Tensor<B, 2>, Vec<[usize; 3]>) {
    let dim = items.first().map_or(1, |i| i.patch_dim);
    let data: Vec<f32> = items
        .iter()
        .flat_map(|i| i.pixels.iter().copied())
        .collect();
    let rows = data.len() / dim;
    let pixels = Tensor::from_data(TensorData::new(data, [rows, dim]), device);
    (pixels, items.iter().map(|i| i.grid).collect())
}

fn labels_of<B: Backend>(items: &[Item], label: Label, device: &B::Device) -> Tensor<B, 1, Int> {
    let labels: Vec<i64> = items
        .iter()
        .map(|i| i.labels[label_index(label)] as i64)
        .collect();
    let n = labels.len();
    Tensor::from_data(TensorData::new(labels, [n]), device)
}

/// Held-out accuracy of task `t`: `size → (correct, total)`.
fn accuracy<B: Backend>(
    probe: &Probe<B>,
    t: usize,
    task: Task,
    pooled: bool,
    items: &[Item],
    device: &B::Device,
) -> Result<BTreeMap<u32, (usize, usize)>> {
    let mut per_size: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    for chunk in items.chunks(64) {
        let (pixels, grid) = pixels_of::<B>(chunk, device);
        let logits = probe.logits(t, pooled, probe.features(pixels, &grid)?);
        let pred = logits.argmax(1).flatten::<1>(0, 1);
        let hits: Vec<bool> = pred
            .equal(labels_of::<B>(chunk, task.label, device))
            .into_data()
            .to_vec()
            .unwrap_or_default();
        for (item, hit) in chunk.iter().zip(hits) {
            let cell = per_size.entry(item.size).or_default();
            cell.0 += usize::from(hit);
            cell.1 += 1;
        }
    }
    Ok(per_size)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.graft.is_some() && args.seed >= 1_000_003 {
        bail!(
            "--seed {} would train on the recipe's test images (stream seed + 1,000,003); \
             use a seed below 1,000,003 with --graft",
            args.seed
        );
    }
    let tasks: Vec<Task> = args
        .tasks
        .iter()
        .map(|t| Task::parse(t))
        .collect::<Result<_>>()?;
    let pooled = |task: Task| match task.label {
        Label::Cell => args.cell_head == Head::Pooled,
        _ => args.head == Head::Pooled,
    };
    let mut cof = RecipeDefaults::parse_from(["chain-of-focus"])
        .recipe
        .resolve()?;
    set_from(&mut cof.crop_pixels, &args.crop_pixels);
    set_from(&mut cof.box_grid, &args.box_grid);
    set_from(&mut cof.target_radius, &args.target_radius);
    if args.sizes.as_ref().is_some_and(Vec::is_empty) {
        bail!("--sizes is empty");
    }
    let mut source = Source {
        env: make_env(&cof)?,
        spec: task_spec(&cof),
        sizes: args.sizes.clone().unwrap_or_else(|| cof.sizes.clone()),
        box_grid: cof.box_grid,
        dump: args.dump.clone(),
    };
    let device = Default::default();
    let init = match &args.init_from {
        Some(dir) => Some(Qwen2VL::<TrainBackend>::from_dir(dir, &device)?),
        None => None,
    };
    let tower = match init.as_ref().map(|m| &m.visual) {
        Some(VisionTower::Qwen2(t)) => t.clone(),
        Some(VisionTower::Qwen25(_)) => bail!("the probe takes a Qwen2-VL tower"),
        None => {
            let text = std::fs::read_to_string(cof.model.join("config.json"))?;
            let value: serde_json::Value = serde_json::from_str(&text)?;
            let mut vc = Qwen2VisionConfig::from_json_value(&value["vision_config"])?;
            vc.depth = args.depth;
            vc.embed_dim = args.embed;
            vc.num_heads = args.heads;
            Qwen2VisionTower::random(&vc, args.seed, &device)?
        }
    };
    let vc = tower.config.clone();
    let views: Vec<View> = [View::Crop, View::First]
        .into_iter()
        .filter(|v| tasks.iter().any(|t| t.view == *v))
        .collect();
    let held_out_of = |view: View, source: &Source| -> Result<Vec<Item>> {
        (0..args.eval_size as u64)
            .map(|i| source.item(view, i, args.seed + 1_000_000))
            .collect()
    };
    let mut held_out = Vec::new();
    for &view in &views {
        held_out.push((view, held_out_of(view, &source)?));
    }
    source.dump = None;
    let held = |view: View| {
        held_out
            .iter()
            .find(|(v, _)| *v == view)
            .map_or(&[][..], |(_, items)| items.as_slice())
    };
    let heads = tasks
        .iter()
        .map(|t| {
            let tokens = held(t.view)
                .first()
                .map_or(0, |i| i.grid.iter().product::<usize>())
                / vc.spatial_merge_size.pow(2);
            let classes = match t.label {
                Label::Colour => NAMED_COLORS.len(),
                Label::Shape => Shape::ALL.len(),
                Label::Cell => (cof.box_grid * cof.box_grid) as usize,
            };
            let inputs = if pooled(*t) {
                vc.hidden_size
            } else {
                tokens * vc.hidden_size
            };
            LinearConfig::new(inputs, classes).init(&device)
        })
        .collect();
    let mut probe = Probe { tower, heads };
    println!(
        "probe: tasks {:?}, tower depth {} width {} heads {} ({} parameters), sizes {:?}, crop {} px, box grid {}, target radius {}",
        args.tasks,
        vc.depth,
        vc.embed_dim,
        vc.num_heads,
        probe.num_params(),
        source.sizes,
        cof.crop_pixels,
        cof.box_grid,
        cof.target_radius
    );
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut recent = Vec::new();
    let started = std::time::Instant::now();
    for step in 1..=args.steps {
        let mut loss: Option<Tensor<TrainBackend, 1>> = None;
        for &view in &views {
            let items: Vec<Item> = (0..args.batch as u64)
                .map(|j| source.item(view, (step * args.batch) as u64 + j, args.seed))
                .collect::<Result<_>>()?;
            let (pixels, grid) = pixels_of::<TrainBackend>(&items, &device);
            let features = probe.features(pixels, &grid)?;
            for (t, task) in tasks.iter().enumerate().filter(|(_, t)| t.view == view) {
                let logits = probe.logits(t, pooled(*task), features.clone());
                let l = loss_fn.forward(logits, labels_of(&items, task.label, &device));
                loss = Some(match loss {
                    Some(sum) => sum + l,
                    None => l,
                });
            }
        }
        let loss = loss.context("no tasks")?;
        recent.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &probe);
        probe = optim.step(args.lr, probe, grads);
        if (args.eval_every > 0 && step % args.eval_every == 0) || step == args.steps {
            let mean = recent.iter().sum::<f32>() / recent.len().max(1) as f32;
            recent.clear();
            let valid = probe.valid();
            let mut line = format!(
                "step {step:5}  loss {mean:.3}  ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            for (t, task) in tasks.iter().enumerate() {
                let per_size = accuracy(&valid, t, *task, pooled(*task), held(task.view), &device)?;
                let (c, n) = per_size
                    .values()
                    .fold((0, 0), |(c, n), &(a, b)| (c + a, n + b));
                let sizes: Vec<String> = per_size
                    .iter()
                    .map(|(s, &(a, b))| format!("{s}: {:.0}", 100.0 * a as f64 / b.max(1) as f64))
                    .collect();
                line.push_str(&format!(
                    "\n    {}: {:.1}% ({})",
                    args.tasks[t],
                    100.0 * c as f64 / n.max(1) as f64,
                    sizes.join(", ")
                ));
            }
            println!("{line}");
        }
    }
    if let (Some(out), Some(mut model), Some(from)) = (&args.graft, init, &args.init_from) {
        model.visual = VisionTower::Qwen2(probe.tower);
        write_checkpoint(from, out, &model.valid())?;
        println!("wrote {} with the trained tower", out.display());
    }
    Ok(())
}
