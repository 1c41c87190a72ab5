//! The `recipes` library: each paper recipe as a small module assembling the
//! vlrl crates, shared by the `recipes` binary and its integration tests.

pub mod base_model;
pub mod chain_of_focus;
pub mod eval;
pub mod generate;
pub mod lmm_r1;
pub mod med_r1;
pub mod policy;
pub mod pretrain;
pub mod sft;
pub mod single_turn;
pub mod video_rts;
pub mod vl_prompt;

/// The training backend of this build: CUDA with `--features cuda`, else CPU.
#[cfg(feature = "cuda")]
pub type TrainBackend = vlrl::backend::CudaTrain;
#[cfg(not(feature = "cuda"))]
pub type TrainBackend = vlrl::backend::CpuTrain;
