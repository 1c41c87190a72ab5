// Placeholder so the workspace manifest parses; the vision helper replaces it.
fn main() {}
