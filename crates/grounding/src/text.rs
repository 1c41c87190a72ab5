//! Small text helpers shared with `vlrl-rewards`.

/// Content of the first `<tag>…</tag>` block, like Python's
/// `re.search(r'<tag>(.*?)</tag>', text, re.DOTALL)` (non-greedy, first
/// opening tag, first closing tag after it). Not trimmed.
pub fn extract_tag<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let rest = text.get(start..)?;
    let end = rest.find(&close)?;
    rest.get(..end)
}

/// Content of the last `<tag>…</tag>` block (models sometimes restate an
/// answer; the last one is what they meant).
pub fn extract_last_tag<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let end = text.rfind(&close)?;
    let head = text.get(..end)?;
    let start = head.rfind(&open)? + open.len();
    head.get(start..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        let t = "<think>x</think><answer> A </answer><answer>B</answer>";
        assert_eq!(extract_tag(t, "answer"), Some(" A "));
        assert_eq!(extract_last_tag(t, "answer"), Some("B"));
        assert_eq!(extract_tag("<answer>open", "answer"), None);
        assert_eq!(extract_tag("</answer><answer>", "answer"), None);
        assert_eq!(extract_last_tag("</answer><answer>", "answer"), None);
        assert_eq!(extract_tag("<answer>é</answer>", "answer"), Some("é"));
    }
}
