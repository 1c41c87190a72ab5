#![doc = include_str!("../README.md")]

pub mod bbox;
pub mod coords;
pub mod crop;
pub mod error;
pub mod focus;
pub mod parse;
pub mod text;

pub use bbox::BBox;
pub use coords::{smart_resize, smart_resize_default, CoordSpace, ImageFrame};
pub use crop::{plan_zoom, render_plan, zoom, CropRegion, Zoom, ZoomConfig, ZoomPlan};
pub use error::GroundingError;
pub use focus::{FocusAction, FocusConfig, FocusLoop, FocusStatus, InvalidReason};
pub use parse::{
    parse_boxes, parse_plain_lists, parse_qwen25vl_json, parse_qwen2vl_tokens, BoxFormat,
    LabeledBox, ParsedBoxes,
};
pub use text::{extract_last_tag, extract_tag};
