//! Boxes from model output, coordinate conversions, crop and zoom, the Chain-of-Focus loop.
