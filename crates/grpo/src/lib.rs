//! Model-agnostic GRPO / Dr.GRPO / DAPO training core on burn.
