//! LoRA adapters and freezing by module name.

mod common;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use common::{params, B};

type Inner = <B as burn::tensor::backend::AutodiffBackend>::InnerBackend;
use vlrl_grpo::lora::{freeze_modules, load_adapters, save_adapters, LoraConfig, LoraLinear};
use vlrl_grpo::toy::ToyConfig;

#[derive(Module, Debug)]
struct Net<B: Backend> {
    proj: LoraLinear<B>,
}

fn net(seed: u64) -> Net<B> {
    let device = Default::default();
    let base = ToyConfig::default().init::<B>(&device, seed).out;
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..Default::default()
    };
    Net {
        proj: LoraLinear::new(base, &cfg).unwrap(),
    }
}

fn input() -> Tensor<B, 2> {
    let hidden = ToyConfig::default().hidden;
    Tensor::<B, 2>::random(
        [5, hidden],
        Distribution::Uniform(-1.0, 1.0),
        &Default::default(),
    )
}

fn max_diff(a: Tensor<B, 2>, b: Tensor<B, 2>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[test]
fn adapter_starts_at_the_base_model_and_only_it_gets_gradients() {
    let n = net(1);
    let x = input();
    let y = n.proj.forward(x.clone());
    let y_base = n.proj.base.forward(x.clone());
    assert_eq!(max_diff(y.clone(), y_base), 0.0, "B = 0 at init");
    let grads = GradientsParams::from_grads(y.sum().backward(), &n);
    assert!(
        grads.get::<Inner, 2>(n.proj.lora_a.id).is_some()
            && grads.get::<Inner, 2>(n.proj.lora_b.id).is_some()
    );
    assert!(
        grads.get::<Inner, 2>(n.proj.base.weight.id).is_none(),
        "the base layer is frozen"
    );
}

#[test]
fn merge_and_unmerge_preserve_outputs_and_weights() {
    let mut n = net(2);
    let out = n.proj.lora_b.dims()[1];
    n.proj.lora_b = burn::module::Param::from_tensor(Tensor::random(
        [4, out],
        Distribution::Uniform(-0.5, 0.5),
        &Default::default(),
    ));
    let x = input();
    let before = n.proj.forward(x.clone());
    let w0 = n.proj.base.weight.val();
    let merged = n.proj.clone().merge();
    assert!(merged.is_merged());
    // Merged and separate paths multiply in different shapes (TF32 on CUDA).
    let tol = common::tolerance(1e-5, &before.to_data().to_vec::<f32>().unwrap());
    assert!(max_diff(merged.forward(x.clone()), before.clone()) < tol);
    assert!(
        max_diff(merged.base.weight.val(), w0.clone()) > 1e-3,
        "merge changed W"
    );
    let back = merged.unmerge();
    assert!(!back.is_merged());
    assert!(max_diff(back.base.weight.val(), w0) < 1e-6);
    assert!(max_diff(back.forward(x), before) < tol);
}

#[test]
fn adapters_save_alone_and_load_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapters.safetensors");
    let mut a = net(3);
    let out = a.proj.lora_b.dims()[1];
    a.proj.lora_b = burn::module::Param::from_tensor(Tensor::random(
        [4, out],
        Distribution::Uniform(-0.5, 0.5),
        &Default::default(),
    ));
    assert_eq!(save_adapters(&a, &path).unwrap(), 2);
    // Only the adapters are in the file.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    assert_eq!(names, vec!["proj.lora_a", "proj.lora_b"]);

    let b = load_adapters(net(3), &path).unwrap();
    assert_eq!(params(&a), params(&b));
    // A file with an unknown tensor is rejected.
    let other = dir.path().join("bad.safetensors");
    #[derive(Module, Debug)]
    struct Other<B: Backend> {
        other: LoraLinear<B>,
    }
    let o = Other { other: net(4).proj };
    save_adapters(&o, &other).unwrap();
    assert!(load_adapters(net(3), &other).is_err());
}

#[test]
fn freezing_by_name_removes_gradients() {
    let device = Default::default();
    let toy = ToyConfig::default().init::<B>(&device, 5);
    let (toy, frozen) = freeze_modules(toy, &["hidden".to_string()]);
    assert_eq!(frozen, 2, "weight and bias of `hidden`");
    let logits = toy
        .logits(
            Tensor::<B, 2, burn::tensor::Int>::zeros([2, 1], &device),
            Tensor::<B, 2, burn::tensor::Int>::zeros([2, 3], &device),
            1.0,
        )
        .unwrap();
    let grads = GradientsParams::from_grads(logits.sum().backward(), &toy);
    // 5 modules × (weight [+ bias]) = 7 float params; 2 frozen.
    assert_eq!(grads.len(), 5);
}
