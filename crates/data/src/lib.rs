//! Dataset rows (JSONL, EasyR1, OmniMedVQA) and deterministic synthetic task generators.
