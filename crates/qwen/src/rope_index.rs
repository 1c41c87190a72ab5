//! 3D M-RoPE position ids for mixed text / image / video sequences
//! (`get_rope_index` of Hugging Face `Qwen2VLModel` and `Qwen2_5_VLModel`).
//!
//! Qwen2-VL (arXiv:2409.12191, §2.1 "Multimodal Rotary Position Embedding")
//! gives every token three position ids (temporal, height, width):
//! - text tokens use the same id on all three axes, counting up by one;
//! - the tokens of one image / video (after the 2x2 spatial merge) get
//!   `(start + t, start + row, start + col)` on a `t x (h/m) x (w/m)` grid,
//!   and the next token starts at `start + max(h, w) / m` (the temporal axis
//!   does not advance the counter);
//! - Qwen2.5-VL (arXiv:2502.13923, §2.1.1) spaces video frames by absolute
//!   time: the temporal id is `trunc(t * tokens_per_second * second_per_grid_t)`,
//!   computed in float32 exactly as transformers does (`arange(t) * interval`,
//!   then `.long()`). Images keep an interval of 1.
//!
//! Padding (attention mask 0) is removed before the ids are computed, and
//! padded slots get position 0. `rope_deltas[row] = max(position) + 1 -
//! (number of attended tokens)`: during decoding a new token's three ids are
//! all `attended_tokens_before_it + rope_delta`.
//!
//! transformers 5 groups tokens by `mm_token_type_ids` from the processor
//! (0 text, 1 image, 2 video), which is exactly "is `<|image_pad|>` /
//! `<|video_pad|>`"; here the types are derived from the token ids. Grids are
//! consumed in order across the whole batch (row 0's images first), one grid
//! per run of consecutive placeholder tokens.
//!
//! Where transformers would silently mis-assign or crash (more placeholder
//! runs than grids, a run whose length does not match its grid, grids left
//! over, a grid not divisible by the merge size, missing
//! `second_per_grid_ts`), this returns a [`RopeIndexError`] instead.

use std::fmt;

/// How video frames are spaced on the temporal axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TemporalSpacing {
    /// Qwen2-VL: the temporal id of frame group `i` is `i`.
    FrameIndex,
    /// Qwen2.5-VL: the temporal id of frame group `i` is
    /// `trunc(i * tokens_per_second * second_per_grid_t)` in float32
    /// (`vision_config.tokens_per_second`, published value 2).
    Seconds { tokens_per_second: f32 },
}

/// The config values `get_rope_index` reads.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeIndexConfig {
    /// `<|image_pad|>` (`image_token_id` in config.json).
    pub image_token_id: u32,
    /// `<|video_pad|>` (`video_token_id` in config.json).
    pub video_token_id: u32,
    /// `vision_config.spatial_merge_size` (2 in every published checkpoint).
    pub spatial_merge_size: usize,
    pub temporal: TemporalSpacing,
}

impl RopeIndexConfig {
    /// Qwen2-VL: frames are spaced by their index.
    pub fn qwen2_vl(image_token_id: u32, video_token_id: u32, spatial_merge_size: usize) -> Self {
        Self {
            image_token_id,
            video_token_id,
            spatial_merge_size,
            temporal: TemporalSpacing::FrameIndex,
        }
    }

    /// Qwen2.5-VL: frames are spaced by `tokens_per_second * second_per_grid_t`.
    pub fn qwen2_5_vl(
        image_token_id: u32,
        video_token_id: u32,
        spatial_merge_size: usize,
        tokens_per_second: f32,
    ) -> Self {
        Self {
            image_token_id,
            video_token_id,
            spatial_merge_size,
            temporal: TemporalSpacing::Seconds { tokens_per_second },
        }
    }
}

/// One `image_grid_thw` / `video_grid_thw` row: patches before the spatial
/// merge (temporal groups, patch rows, patch columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GridThw {
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl GridThw {
    pub fn new(t: usize, h: usize, w: usize) -> Self {
        Self { t, h, w }
    }
}

impl From<[usize; 3]> for GridThw {
    fn from([t, h, w]: [usize; 3]) -> Self {
        Self { t, h, w }
    }
}

impl fmt::Display for GridThw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.t, self.h, self.w)
    }
}

/// Which kind of placeholder a grid or run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VisionKind {
    Image,
    Video,
}

impl fmt::Display for VisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VisionKind::Image => "image",
            VisionKind::Video => "video",
        })
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RopeIndexError {
    #[error("spatial_merge_size must be at least 1")]
    ZeroMergeSize,
    #[error("input_ids rows differ in length: row 0 has {expected} tokens, row {row} has {found}")]
    RaggedBatch {
        row: usize,
        expected: usize,
        found: usize,
    },
    #[error("attention_mask has {mask_rows} rows but input_ids has {id_rows}")]
    MaskRowCount { mask_rows: usize, id_rows: usize },
    #[error(
        "attention_mask row {row} has {mask_len} entries but input_ids row {row} has {ids_len}"
    )]
    MaskLength {
        row: usize,
        mask_len: usize,
        ids_len: usize,
    },
    #[error(
        "row {row}: the {kind} placeholder run at token {position} has no {kind} grid left \
         (more {kind} placeholder runs than the {available} {kind}_grid_thw entries given)"
    )]
    MissingGrid {
        kind: VisionKind,
        row: usize,
        position: usize,
        available: usize,
    },
    #[error(
        "row {row}: the {kind} placeholder run at token {position} has {found} tokens but \
         {kind}_grid_thw[{grid_index}] = {grid} with spatial_merge_size {merge} needs {expected}"
    )]
    PlaceholderCount {
        kind: VisionKind,
        row: usize,
        position: usize,
        grid_index: usize,
        grid: GridThw,
        merge: usize,
        found: usize,
        expected: usize,
    },
    #[error("{kind}_grid_thw has {total} entries but only {used} placeholder runs use them")]
    UnusedGrids {
        kind: VisionKind,
        used: usize,
        total: usize,
    },
    #[error(
        "{kind}_grid_thw[{index}] = {grid}: t must be >= 1 and h, w positive multiples of \
         spatial_merge_size {merge}"
    )]
    BadGrid {
        kind: VisionKind,
        index: usize,
        grid: GridThw,
        merge: usize,
    },
    #[error("second_per_grid_ts has {found} entries but video_grid_thw has {expected}")]
    SecondsCount { found: usize, expected: usize },
    #[error("second_per_grid_ts[{index}] = {value} must be finite and >= 0")]
    BadSeconds { index: usize, value: f32 },
}

/// The result: `[3][batch][seq]` position ids (row-major, ready for a
/// `[3, batch, seq]` tensor) and one rope delta per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RopeIndex {
    batch: usize,
    seq_len: usize,
    positions: Vec<i64>,
    rope_deltas: Vec<i64>,
}

impl RopeIndex {
    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// `[3, batch, seq]` shape of [`Self::positions`].
    pub fn shape(&self) -> [usize; 3] {
        [3, self.batch, self.seq_len]
    }

    /// All ids, axis-major: `positions[(axis * batch + row) * seq + col]`.
    pub fn positions(&self) -> &[i64] {
        &self.positions
    }

    pub fn into_positions(self) -> Vec<i64> {
        self.positions
    }

    /// The ids of one axis (0 temporal, 1 height, 2 width) for one row, or
    /// `None` when out of range.
    pub fn row(&self, axis: usize, row: usize) -> Option<&[i64]> {
        if axis >= 3 || row >= self.batch {
            return None;
        }
        let start = (axis * self.batch + row) * self.seq_len;
        self.positions.get(start..start + self.seq_len)
    }

    /// `max(position) + 1 - attended tokens`, per row (HF `mrope_position_deltas`).
    pub fn rope_deltas(&self) -> &[i64] {
        &self.rope_deltas
    }

    /// The (equal on all three axes) position id of a token generated after
    /// `attended_before` attended tokens in `row`, as HF computes it while
    /// decoding with a KV cache: `attended_before + rope_delta`.
    pub fn decode_position(&self, row: usize, attended_before: usize) -> Option<i64> {
        let delta = *self.rope_deltas.get(row)?;
        i64::try_from(attended_before).ok().map(|a| a + delta)
    }
}

/// Per-token modality, as transformers' `mm_token_type_ids`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenType {
    Text,
    Vision(VisionKind),
}

/// Grids of one kind, handed out in order across the whole batch.
struct GridQueue<'a> {
    kind: VisionKind,
    grids: &'a [GridThw],
    next: usize,
}

impl<'a> GridQueue<'a> {
    fn take(&mut self, row: usize, position: usize) -> Result<(usize, GridThw), RopeIndexError> {
        let index = self.next;
        let grid = *self.grids.get(index).ok_or(RopeIndexError::MissingGrid {
            kind: self.kind,
            row,
            position,
            available: self.grids.len(),
        })?;
        self.next += 1;
        Ok((index, grid))
    }

    fn finish(&self) -> Result<(), RopeIndexError> {
        if self.next == self.grids.len() {
            Ok(())
        } else {
            Err(RopeIndexError::UnusedGrids {
                kind: self.kind,
                used: self.next,
                total: self.grids.len(),
            })
        }
    }
}

fn check_grids(kind: VisionKind, grids: &[GridThw], merge: usize) -> Result<(), RopeIndexError> {
    for (index, g) in grids.iter().enumerate() {
        if g.t == 0 || g.h == 0 || g.w == 0 || g.h % merge != 0 || g.w % merge != 0 {
            return Err(RopeIndexError::BadGrid {
                kind,
                index,
                grid: *g,
                merge,
            });
        }
    }
    Ok(())
}

fn to_i64(v: usize) -> i64 {
    // Sequence lengths and grid sizes are far below i64::MAX on any machine
    // that can hold the tokens; saturate rather than panic.
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Computes the M-RoPE position ids and rope deltas of a batch.
///
/// - `input_ids`: one row per sequence, all the same length (left padding as
///   the processor produces it).
/// - `attention_mask`: `true` for real tokens; `None` means all real.
/// - `image_grid_thw` / `video_grid_thw`: one entry per image / video, in the
///   order their placeholder runs appear (row by row).
/// - `second_per_grid_ts`: one entry per video (Qwen2.5-VL; ignored for
///   [`TemporalSpacing::FrameIndex`]); `None` means 1.0 for every video, as
///   transformers defaults it.
pub fn get_rope_index<R, M>(
    config: &RopeIndexConfig,
    input_ids: &[R],
    attention_mask: Option<&[M]>,
    image_grid_thw: &[GridThw],
    video_grid_thw: &[GridThw],
    second_per_grid_ts: Option<&[f32]>,
) -> Result<RopeIndex, RopeIndexError>
where
    R: AsRef<[u32]>,
    M: AsRef<[bool]>,
{
    let merge = config.spatial_merge_size;
    if merge == 0 {
        return Err(RopeIndexError::ZeroMergeSize);
    }
    check_grids(VisionKind::Image, image_grid_thw, merge)?;
    check_grids(VisionKind::Video, video_grid_thw, merge)?;
    if let Some(seconds) = second_per_grid_ts {
        if seconds.len() != video_grid_thw.len() {
            return Err(RopeIndexError::SecondsCount {
                found: seconds.len(),
                expected: video_grid_thw.len(),
            });
        }
        if let Some((index, &value)) = seconds
            .iter()
            .enumerate()
            .find(|(_, s)| !s.is_finite() || **s < 0.0)
        {
            return Err(RopeIndexError::BadSeconds { index, value });
        }
    }

    let batch = input_ids.len();
    let seq_len = input_ids.first().map_or(0, |r| r.as_ref().len());
    for (row, ids) in input_ids.iter().enumerate() {
        let found = ids.as_ref().len();
        if found != seq_len {
            return Err(RopeIndexError::RaggedBatch {
                row,
                expected: seq_len,
                found,
            });
        }
    }
    if let Some(mask) = attention_mask {
        if mask.len() != batch {
            return Err(RopeIndexError::MaskRowCount {
                mask_rows: mask.len(),
                id_rows: batch,
            });
        }
        for (row, m) in mask.iter().enumerate() {
            if m.as_ref().len() != seq_len {
                return Err(RopeIndexError::MaskLength {
                    row,
                    mask_len: m.as_ref().len(),
                    ids_len: seq_len,
                });
            }
        }
    }

    let mut images = GridQueue {
        kind: VisionKind::Image,
        grids: image_grid_thw,
        next: 0,
    };
    let mut videos = GridQueue {
        kind: VisionKind::Video,
        grids: video_grid_thw,
        next: 0,
    };
    let mut positions = vec![0i64; 3 * batch * seq_len];
    let mut rope_deltas = Vec::with_capacity(batch);

    for (row, ids) in input_ids.iter().enumerate() {
        let ids = ids.as_ref();
        // Indices of the attended tokens; HF drops padding before grouping.
        let kept: Vec<usize> = match attention_mask.and_then(|m| m.get(row)) {
            Some(m) => m
                .as_ref()
                .iter()
                .enumerate()
                .filter_map(|(i, &keep)| keep.then_some(i))
                .collect(),
            None => (0..seq_len).collect(),
        };
        let types: Vec<TokenType> = kept
            .iter()
            .map(|&i| token_type(config, ids.get(i).copied().unwrap_or(0)))
            .collect();

        // [3][kept.len()] ids for the attended tokens of this row.
        let mut axes: [Vec<i64>; 3] = std::array::from_fn(|_| Vec::with_capacity(kept.len()));
        let mut current: i64 = 0;
        let mut start = 0usize;
        while start < types.len() {
            let kind = types[start];
            let len = types[start..].iter().take_while(|&&t| t == kind).count();
            match kind {
                TokenType::Text => {
                    for k in 0..len {
                        let p = current + to_i64(k);
                        for axis in axes.iter_mut() {
                            axis.push(p);
                        }
                    }
                    current += to_i64(len);
                }
                TokenType::Vision(vk) => {
                    let position = kept.get(start).copied().unwrap_or(start);
                    let (grid_index, grid, interval) = match vk {
                        VisionKind::Image => {
                            let (i, g) = images.take(row, position)?;
                            (i, g, TemporalInterval::One)
                        }
                        VisionKind::Video => {
                            let (i, g) = videos.take(row, position)?;
                            (i, g, temporal_interval(config, second_per_grid_ts, i))
                        }
                    };
                    let (gt, gh, gw) = (grid.t, grid.h / merge, grid.w / merge);
                    let expected = gt * gh * gw;
                    if expected != len {
                        return Err(RopeIndexError::PlaceholderCount {
                            kind: vk,
                            row,
                            position,
                            grid_index,
                            grid,
                            merge,
                            found: len,
                            expected,
                        });
                    }
                    for t in 0..gt {
                        let tp = current + interval.scale(t);
                        for y in 0..gh {
                            for x in 0..gw {
                                axes[0].push(tp);
                                axes[1].push(current + to_i64(y));
                                axes[2].push(current + to_i64(x));
                            }
                        }
                    }
                    current += to_i64(gh.max(gw));
                }
            }
            start += len;
        }

        let max = axes
            .iter()
            .flat_map(|a| a.iter().copied())
            .max()
            .map_or(0, |m| m + 1);
        rope_deltas.push(max - to_i64(kept.len()));
        for (axis, values) in axes.iter().enumerate() {
            let base = (axis * batch + row) * seq_len;
            for (&col, &v) in kept.iter().zip(values) {
                if let Some(slot) = positions.get_mut(base + col) {
                    *slot = v;
                }
            }
        }
    }
    images.finish()?;
    videos.finish()?;

    Ok(RopeIndex {
        batch,
        seq_len,
        positions,
        rope_deltas,
    })
}

fn token_type(config: &RopeIndexConfig, id: u32) -> TokenType {
    if id == config.image_token_id {
        TokenType::Vision(VisionKind::Image)
    } else if id == config.video_token_id {
        TokenType::Vision(VisionKind::Video)
    } else {
        TokenType::Text
    }
}

/// Spacing of temporal ids within one image / video.
#[derive(Debug, Clone, Copy)]
enum TemporalInterval {
    /// Images, Qwen2-VL videos, and Qwen2.5-VL videos without
    /// `second_per_grid_ts` (transformers then multiplies by the integer 1).
    One,
    /// `tokens_per_second * second_per_grid_t`, rounded to f32 like the torch
    /// scalar product.
    Float(f32),
}

impl TemporalInterval {
    fn scale(self, t: usize) -> i64 {
        match self {
            TemporalInterval::One => to_i64(t),
            // `(arange(t) * interval).long()`: an f32 product truncated toward
            // zero. `as` saturates on overflow, never panics.
            TemporalInterval::Float(interval) => ((t as f32) * interval) as i64,
        }
    }
}

fn temporal_interval(
    config: &RopeIndexConfig,
    second_per_grid_ts: Option<&[f32]>,
    video_index: usize,
) -> TemporalInterval {
    match config.temporal {
        TemporalSpacing::FrameIndex => TemporalInterval::One,
        TemporalSpacing::Seconds { tokens_per_second } => {
            match second_per_grid_ts.and_then(|s| s.get(video_index)) {
                Some(&seconds) => TemporalInterval::Float(tokens_per_second * seconds),
                // HF's default is the Python int 1: `tokens_per_second * 1`.
                None => TemporalInterval::Float(tokens_per_second),
            }
        }
    }
}
