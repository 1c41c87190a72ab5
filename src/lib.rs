//! vlrl: reinforcement learning for vision-language models, in Rust on burn.
//!
//! This root crate re-exports the workspace crates so a user can depend on one
//! package, and names the backends once ([`backend`]). Each crate is also
//! usable alone (`vlrl-rewards`, `vlrl-video`, ...).

pub use vlrl_data as data;
pub use vlrl_grounding as grounding;
pub use vlrl_grpo as grpo;
pub use vlrl_qwen as qwen;
pub use vlrl_rewards as rewards;
pub use vlrl_video as video;
pub use vlrl_vision as vision;

/// The tensor backends, named once for every binary, test and bench.
///
/// Library code is generic over `B: Backend`; only binaries pick a concrete
/// type, through these aliases. `docs/benchmarks.md` records why the CPU
/// default is what it is.
pub mod backend {
    /// Default CPU backend (pure Rust, SIMD + rayon).
    pub type Cpu = burn::backend::Flex;
    /// The CPU backend with autodiff, for training.
    pub type CpuTrain = burn::backend::Autodiff<Cpu>;
    /// The alternative pure-Rust CPU backend, kept for benchmarks.
    pub type NdArray = burn::backend::NdArray;

    /// NVIDIA GPU backend (burn-cuda; kernels compiled at run time by NVRTC).
    #[cfg(feature = "cuda")]
    pub type Cuda = burn::backend::Cuda;
    /// The GPU backend with autodiff, for training.
    #[cfg(feature = "cuda")]
    pub type CudaTrain = burn::backend::Autodiff<Cuda>;
}
