//! Verifiers for R1-style RL: format, accuracy, IoU, Dynamic IoU, detection, counting, OCR.
