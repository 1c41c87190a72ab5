//! Numbers and simple math expressions out of model answers.
//!
//! Handles what models write for numeric answers: thousands separators
//! (`1,000`), trailing zeros (`3.50`), fractions (`1/2`, `\frac{1}{2}`),
//! percentages (`50%`), currency and units (`$3.50`, `12 km`), and a small
//! expression language for math equivalence (`+ - * / ^`, parentheses,
//! `\sqrt`, `\pi`, `\cdot`, `\times`).

use regex::Regex;
use std::sync::LazyLock;

/// A parsed number; `percent` records a trailing `%` (value is as written, 50 for `50%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParsedNumber {
    pub value: f64,
    pub percent: bool,
}

// Every match holds a digit: a pattern whose parts are all optional
// matches the empty string at each position, and walking those empty
// matches was most of the time of a number search (docs/rewards.md). The
// alternatives keep what that pattern matched: a mantissa, else an
// exponent or a fraction alone (`e5`, `/2`, which then do not parse, so
// `x/2` states no number).
static NUMBER_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let mantissa = r"(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)";
    let exponent = r"[eE][-+]?\d+";
    let fraction = r"\s*/\s*\d+(?:\.\d+)?";
    Regex::new(&format!(
        r"[-+−]?(?:{mantissa}(?:{exponent})?(?:{fraction})?|{exponent}(?:{fraction})?|{fraction})\s*%?"
    ))
    .ok()
});

fn parse_plain(s: &str) -> Option<f64> {
    let s = s.trim().replace(',', "").replace('−', "-");
    if s.is_empty() {
        return None;
    }
    if let Some((a, b)) = s.split_once('/') {
        let (a, b) = (a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?);
        if b == 0.0 {
            return None;
        }
        return Some(a / b);
    }
    let v = s.parse::<f64>().ok()?;
    v.is_finite().then_some(v)
}

/// All numbers in `s`, in order.
pub fn find_numbers(s: &str) -> Vec<ParsedNumber> {
    let Some(re) = NUMBER_RE.as_ref() else {
        return Vec::new();
    };
    re.find_iter(s)
        .filter(|m| m.as_str().bytes().any(|b| b.is_ascii_digit()))
        .filter_map(|m| {
            let t = m.as_str().trim();
            let percent = t.ends_with('%');
            parse_plain(t.trim_end_matches('%')).map(|value| ParsedNumber { value, percent })
        })
        .collect()
}

/// The number an answer states: a `\boxed{}` value, else the whole answer if
/// it is one number (after stripping currency, units and `\frac`), else the
/// last number in the text.
pub fn parse_answer_number(answer: &str) -> Option<ParsedNumber> {
    let region = crate::text::last_boxed(answer).unwrap_or(answer);
    let cleaned = latex_to_plain(region);
    if let Some(v) = eval_expr(&cleaned) {
        // eval_expr reads `50%` as 0.5; report it as written (50, percent).
        let percent = cleaned.trim_end().ends_with('%');
        return Some(ParsedNumber {
            value: if percent { v * 100.0 } else { v },
            percent,
        });
    }
    find_numbers(&cleaned).pop()
}

/// Compares with relative and absolute tolerance; `50%` also equals `0.5`.
pub fn numbers_match(pred: ParsedNumber, truth: f64, rel_tol: f64, abs_tol: f64) -> bool {
    let close = |a: f64, b: f64| (a - b).abs() <= abs_tol.max(rel_tol * b.abs());
    close(pred.value, truth) || (pred.percent && close(pred.value / 100.0, truth))
}

/// Rewrites LaTeX math into the plain syntax [`eval_expr`] reads:
/// `\frac{a}{b}` → `(a)/(b)`, `\sqrt{a}` → `sqrt(a)`, `\cdot`/`\times` → `*`,
/// `\left`/`\right`/`$`/`\!`/`\,` removed, `{}` → `()`, `\%` → `%`.
pub fn latex_to_plain(s: &str) -> String {
    // Every rewrite below starts at one of these characters; plain answers
    // (most of them) skip the dozen scans and copies.
    if !s.contains(['\\', '$', '{', '}']) {
        return s.to_string();
    }
    let mut t = s.to_string();
    for (from, to) in [
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\%", "%"),
        ("$", ""),
        ("\\cdot", "*"),
        ("\\times", "*"),
        ("\\div", "/"),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("\\pi", "pi"),
        // \frac{a}{b} → frac(a)(b); \sqrt{a} → sqrt(a): commands, then braces.
        ("\\frac", "frac"),
        ("\\sqrt", "sqrt"),
        ("\\text", "text"),
        ("\\mathrm", "text"),
    ] {
        if contains_short(&t, from) {
            t = t.replace(from, to);
        }
    }
    if t.contains(['{', '}']) {
        t = t.replace('{', "(").replace('}', ")");
    }
    t
}

/// `hay.contains(needle)` without building a substring searcher: answers
/// are short, and the searcher's set-up cost more than the scan.
fn contains_short(hay: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    let Some(&first) = needle.first() else {
        return true;
    };
    // Comparing the first byte inline skips the call to `memcmp` at
    // almost every position.
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w[0] == first && w == needle)
}

/// Recursion limit of the expression parser (deeply nested input returns `None`).
const MAX_DEPTH: usize = 64;

struct ExprParser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl ExprParser<'_> {
    fn skip_ws(&mut self) {
        while self
            .s
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        self.skip_ws();
        if self.s.get(self.pos..self.pos + w.len()) == Some(w.as_bytes()) {
            self.pos += w.len();
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<f64> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let mut v = self.term()?;
        loop {
            if self.eat(b'+') {
                v += self.term()?;
            } else if self.eat(b'-') {
                v -= self.term()?;
            } else {
                break;
            }
        }
        self.depth -= 1;
        Some(v)
    }

    fn term(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        loop {
            if self.eat(b'*') {
                v *= self.unary()?;
            } else if self.eat(b'/') {
                let d = self.unary()?;
                if d == 0.0 {
                    return None;
                }
                v /= d;
            } else if matches!(self.peek(), Some(b'('))
                || self.peek().is_some_and(|c| c.is_ascii_alphabetic())
            {
                // Implicit multiplication: 2(3), 2sqrt(2), 2pi.
                v *= self.unary()?;
            } else {
                break;
            }
        }
        Some(v)
    }

    fn unary(&mut self) -> Option<f64> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let v = if self.eat(b'-') {
            -self.unary()?
        } else if self.eat(b'+') {
            self.unary()?
        } else {
            let base = self.atom()?;
            if self.eat(b'^') {
                base.powf(self.unary()?)
            } else {
                base
            }
        };
        self.depth -= 1;
        Some(v)
    }

    fn group(&mut self) -> Option<f64> {
        if !self.eat(b'(') {
            return None;
        }
        let v = self.expr()?;
        self.eat(b')').then_some(v)
    }

    fn atom(&mut self) -> Option<f64> {
        if self.peek() == Some(b'(') {
            return self.group();
        }
        if self.eat_word("frac") {
            let a = self.group()?;
            let b = self.group()?;
            return (b != 0.0).then(|| a / b);
        }
        if self.eat_word("sqrt") {
            let a = self.group()?;
            return (a >= 0.0).then(|| a.sqrt());
        }
        if self.eat_word("pi") {
            return Some(std::f64::consts::PI);
        }
        self.skip_ws();
        let start = self.pos;
        while self
            .s
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_digit() || *b == b'.' || *b == b',')
        {
            self.pos += 1;
        }
        let text = std::str::from_utf8(self.s.get(start..self.pos)?).ok()?;
        if text.is_empty() {
            return None;
        }
        let mut v = text.replace(',', "").parse::<f64>().ok()?;
        if self.eat(b'%') {
            v /= 100.0;
        }
        Some(v)
    }
}

/// Evaluates a plain expression (see [`latex_to_plain`]); `None` when it is
/// not entirely a finite number. A trailing `%` divides by 100; `\text{…}`
/// units at the end are ignored.
pub fn eval_expr(s: &str) -> Option<f64> {
    let s = strip_units(s.trim().trim_end_matches('.'));
    let mut p = ExprParser {
        s: s.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let v = p.expr()?;
    p.skip_ws();
    (p.pos == p.s.len() && v.is_finite()).then_some(v)
}

static UNIT_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^(.*?\d[\d)]*\s*%?)\s*(?:text\([^()]*\)|[A-Za-z°²³]+(?:\s*[A-Za-z°²³/]+)*)$").ok()
});

/// Drops a trailing unit (`12 km`, `3 text(cm)`), and currency signs.
fn strip_units(s: &str) -> std::borrow::Cow<'_, str> {
    let s = s.trim_start_matches(['$', '€', '£']);
    if let Some(re) = UNIT_RE.as_ref() {
        if let Some(c) = re.captures(s) {
            if let Some(m) = c.get(1) {
                let head = m.as_str();
                // Keep identifiers that are part of the math.
                let tail = s.get(head.len()..).unwrap_or("").trim();
                if !(tail.starts_with("pi") || tail.starts_with("sqrt") || tail.starts_with("frac"))
                {
                    return std::borrow::Cow::Owned(head.to_string());
                }
            }
        }
    }
    std::borrow::Cow::Borrowed(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Option<f64> {
        parse_answer_number(s).map(|p| p.value)
    }

    #[test]
    fn plain_numbers() {
        assert_eq!(n("1,000"), Some(1000.0));
        assert_eq!(n("3.50"), Some(3.5));
        assert_eq!(n("1/2"), Some(0.5));
        assert_eq!(n("$3.50"), Some(3.5));
        assert_eq!(n("12 km"), Some(12.0));
        assert_eq!(n("-7"), Some(-7.0));
        assert_eq!(n("The answer is 42."), Some(42.0));
        assert_eq!(n("no number"), None);
    }

    #[test]
    fn percent_matches_both_ways() {
        let p = parse_answer_number("50%").unwrap();
        assert!(numbers_match(p, 0.5, 1e-9, 1e-12));
        let q = find_numbers("about 50 % of them").pop().unwrap();
        assert!(q.percent && numbers_match(q, 50.0, 1e-9, 0.0));
    }

    #[test]
    fn latex_expressions() {
        assert_eq!(n("\\frac{1}{2}"), Some(0.5));
        assert_eq!(n("\\boxed{\\dfrac{3}{4}}"), Some(0.75));
        assert_eq!(eval_expr(&latex_to_plain("2\\sqrt{4}")), Some(4.0));
        assert_eq!(eval_expr(&latex_to_plain("2^{3} + 1")), Some(9.0));
        assert_eq!(eval_expr(&latex_to_plain("3 \\times (2 - 5)")), Some(-9.0));
        assert!((eval_expr("2pi").unwrap() - 2.0 * std::f64::consts::PI).abs() < 1e-12);
        assert_eq!(eval_expr(&latex_to_plain("5 \\text{cm}")), Some(5.0));
        assert_eq!(eval_expr("1/0"), None);
        assert_eq!(eval_expr(&"(".repeat(10_000)), None);
    }

    /// The pattern before it required a digit (every part optional).
    const OPTIONAL_PARTS: &str = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?\s*%?";

    fn numbers_with(pattern: &str, s: &str) -> Vec<ParsedNumber> {
        Regex::new(pattern)
            .expect("the reference pattern compiles")
            .find_iter(s)
            .filter(|m| m.as_str().bytes().any(|b| b.is_ascii_digit()))
            .filter_map(|m| {
                let t = m.as_str().trim();
                parse_plain(t.trim_end_matches('%')).map(|value| ParsedNumber {
                    value,
                    percent: t.ends_with('%'),
                })
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn requiring_a_digit_finds_the_same_numbers(s in "[0-9 ,.+/%a-fxE\t−-]{0,24}") {
            proptest::prop_assert_eq!(find_numbers(&s), numbers_with(OPTIONAL_PARTS, &s));
        }
    }

    #[test]
    fn exponents_and_fractions() {
        assert_eq!(n("1.5e3"), Some(1500.0));
        assert_eq!(find_numbers("x 2e-3 y").pop().map(|p| p.value), Some(0.002));
        assert_eq!(
            find_numbers("3 / 4 of it").pop().map(|p| p.value),
            Some(0.75)
        );
        // A fraction or exponent with no number before it states none.
        assert!(find_numbers("x/2").is_empty());
        assert!(find_numbers("file5").is_empty());
    }

    #[test]
    fn tolerance() {
        let p = ParsedNumber {
            value: 100.5,
            percent: false,
        };
        assert!(numbers_match(p, 100.0, 0.01, 0.0));
        assert!(!numbers_match(p, 100.0, 0.001, 0.0));
    }
}
