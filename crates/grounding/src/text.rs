//! Small text helpers shared with `vlrl-rewards`.

/// Content of the first `<tag>…</tag>` block, like Python's
/// `re.search(r'<tag>(.*?)</tag>', text, re.DOTALL)` (non-greedy, first
/// opening tag, first closing tag after it). Not trimmed.
pub fn extract_tag<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let start = tag_positions(text, tag, false).next()?.1;
    let rest = text.get(start..)?;
    let end = tag_positions(rest, tag, true).next()?.0;
    rest.get(..end)
}

/// Content of the last `<tag>…</tag>` block (models sometimes restate an
/// answer; the last one is what they meant).
pub fn extract_last_tag<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let end = tag_positions(text, tag, true).next_back()?.0;
    let head = text.get(..end)?;
    let start = tag_positions(head, tag, false).next_back()?.1;
    head.get(start..)
}

/// `(start, end)` byte ranges of every `<tag>` (or `</tag>` when `closing`)
/// in `text`, in order. Walks the `<` characters (a byte search) instead of
/// formatting the tag and running a substring search: this runs for every
/// reward of every completion.
fn tag_positions<'a>(
    text: &'a str,
    tag: &'a str,
    closing: bool,
) -> impl DoubleEndedIterator<Item = (usize, usize)> + 'a {
    // `<`, the optional `/`, the tag, `>`.
    let len = 2 + usize::from(closing) + tag.len();
    text.match_indices('<').filter_map(move |(i, _)| {
        let after = text.get(i + 1..)?;
        let name = if closing {
            after.strip_prefix('/')?
        } else {
            after
        };
        (name.starts_with(tag) && name.get(tag.len()..)?.starts_with('>')).then_some((i, i + len))
    })
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

    /// What the functions did before the `<` walk: format the tags, search.
    fn by_search<'a>(text: &'a str, tag: &str, last: bool) -> Option<&'a str> {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        if last {
            let head = text.get(..text.rfind(&close)?)?;
            head.get(head.rfind(&open)? + open.len()..)
        } else {
            let rest = text.get(text.find(&open)? + open.len()..)?;
            rest.get(..rest.find(&close)?)
        }
    }

    proptest::proptest! {
        #[test]
        fn the_walk_finds_what_a_search_finds(
            text in "(<|>|/|a|an|<a>|</a>|<an>|</an>|é| ){0,16}",
            tag in "(a|an|)",
        ) {
            proptest::prop_assert_eq!(extract_tag(&text, &tag), by_search(&text, &tag, false));
            proptest::prop_assert_eq!(extract_last_tag(&text, &tag), by_search(&text, &tag, true));
        }
    }
}
