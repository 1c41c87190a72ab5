//! Answer extraction and normalization shared by the text verifiers.

use vlrl_grounding::extract_tag;

/// Where the answer sits in a completion.
///
/// Like R1-V / open-r1's accuracy rewards: the first `<answer>…</answer>`
/// block, trimmed; when there is none, the whole completion trimmed (unless
/// `require_tag`, then nothing).
pub fn answer_region<'a>(completion: &'a str, tag: &str, require_tag: bool) -> Option<&'a str> {
    match extract_tag(completion, tag) {
        Some(a) => Some(a.trim()),
        None if require_tag => None,
        None => Some(completion.trim()),
    }
}

/// Content of the last `\boxed{…}` (or `\fbox{…}`), braces balanced.
pub fn last_boxed(s: &str) -> Option<&str> {
    // Walk the backslashes from the end (a byte search) rather than run a
    // substring search over the whole completion for each command.
    let last = |command: &str| {
        s.rmatch_indices('\\')
            .map(|(i, _)| i)
            .find(|&i| s.get(i + 1..).is_some_and(|t| t.starts_with(command)))
    };
    let start = last("boxed").or_else(|| last("fbox"))?;
    let rest = s.get(start..)?;
    let open = rest.find('{')?;
    // Only whitespace between the command and its brace.
    if !rest
        .get(..open)?
        .trim_start_matches("\\boxed")
        .trim_start_matches("\\fbox")
        .trim()
        .is_empty()
    {
        return None;
    }
    let body = rest.get(open + 1..)?;
    let mut depth = 1usize;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return body.get(..i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Lowercase, trim, collapse whitespace.
pub fn normalize_whitespace_case(s: &str, lowercase: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        if lowercase && w.is_ascii() {
            let start = out.len();
            out.push_str(w);
            out[start..].make_ascii_lowercase();
        } else if lowercase {
            out.extend(w.chars().flat_map(char::to_lowercase));
        } else {
            out.push_str(w);
        }
    }
    out
}

/// SQuAD-style answer normalization (Rajpurkar et al., 2016, official
/// evaluation script): lowercase, drop punctuation, drop the articles
/// a/an/the, collapse whitespace.
pub fn normalize_answer(s: &str) -> String {
    let lowered: String = s
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_ascii_punctuation() { ' ' } else { c })
        .collect();
    let mut out = String::with_capacity(lowered.len());
    for w in lowered
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        assert_eq!(
            answer_region("<think>x</think><answer> B </answer>", "answer", false),
            Some("B")
        );
        assert_eq!(answer_region("  B ", "answer", false), Some("B"));
        assert_eq!(answer_region("B", "answer", true), None);
    }

    #[test]
    fn boxed() {
        assert_eq!(
            last_boxed("so \\boxed{\\frac{1}{2}} done"),
            Some("\\frac{1}{2}")
        );
        assert_eq!(last_boxed("\\boxed{1} then \\boxed {2}"), Some("2"));
        assert_eq!(last_boxed("\\boxed{unclosed"), None);
        assert_eq!(last_boxed("\\boxed x {1}"), None);
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize_answer("The  Eiffel Tower!"), "eiffel tower");
        assert_eq!(
            normalize_whitespace_case("  Hello \n World ", true),
            "hello world"
        );
    }
}
