//! Reasoning labels: bold headings and short first lines, cleaned to one bounded line.

/// Labels are at most this many characters (including the trailing ellipsis when cut).
pub const MAX_LABEL_CHARS: usize = 120;

/// Cleans text into a label: markdown bold/heading markers and control characters removed,
/// whitespace collapsed, cut on a char boundary with "…". `None` if nothing is left.
pub fn clean(text: &str) -> Option<String> {
    let text = text.trim().trim_start_matches('#').trim();
    let text = text.strip_prefix("**").unwrap_or(text);
    let text = text.strip_suffix("**").unwrap_or(text);
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            count += 1;
            space = false;
        }
        if count + 1 >= MAX_LABEL_CHARS {
            out.push('…');
            return Some(out);
        }
        out.push(c);
        count += 1;
    }
    let out = out.trim_matches('*').trim().to_owned();
    (!out.is_empty()).then_some(out)
}

/// A bold heading at the start of `text` (`**Heading**`), once its closing marker arrived.
pub fn bold_heading(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix("**")?;
    let end = rest.find("**")?;
    clean(&rest[..end])
}

/// Watches a growing reasoning text and yields the first line of each paragraph when that line
/// is short (a step heading) or bold. Memory is bounded: long lines are not kept.
#[derive(Debug)]
pub struct ParagraphLabels {
    line: String,
    /// The current line may still become a label (it starts a paragraph and is short so far).
    candidate: bool,
    /// The previous line was blank (or nothing was seen yet).
    para_start: bool,
    started: bool,
}

/// Lines longer than this are prose, not step headings.
const SHORT_LINE: usize = 100;

impl Default for ParagraphLabels {
    fn default() -> Self {
        Self::new()
    }
}

impl ParagraphLabels {
    pub fn new() -> Self {
        ParagraphLabels {
            line: String::new(),
            candidate: true,
            para_start: true,
            started: false,
        }
    }

    /// Feeds more text; returns labels for lines completed by it.
    pub fn push(&mut self, text: &str, out: &mut Vec<String>) {
        self.started = true;
        for c in text.chars() {
            if c == '\n' {
                self.end_line(out);
            } else if self.candidate {
                self.line.push(c);
                let bold = self.line.trim_start().starts_with("**");
                let long = self.line.chars().count() > SHORT_LINE;
                // A bold heading may run a little longer; anything past 4x is prose either way.
                if (long && !bold) || self.line.len() > 4 * SHORT_LINE {
                    self.candidate = false;
                    self.line = String::new();
                }
            }
        }
    }

    /// The block ended: a pending short first line still counts.
    pub fn finish(&mut self, out: &mut Vec<String>) {
        if self.started {
            self.end_line(out);
        }
        *self = ParagraphLabels::new();
    }

    fn end_line(&mut self, out: &mut Vec<String>) {
        let line = std::mem::take(&mut self.line);
        let blank = self.candidate && line.trim().is_empty();
        if self.candidate
            && self.para_start
            && !blank
            && let Some(label) = bold_heading(&line).or_else(|| clean(&line))
        {
            out.push(label);
        }
        self.para_start = blank;
        self.candidate = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(
            clean("  **Weighing\tthe\u{7}  options**  ").as_deref(),
            Some("Weighing the options")
        );
        assert_eq!(clean("**  **"), None);
        let long = "é".repeat(300);
        let cut = clean(&long).unwrap_or_default();
        assert_eq!(cut.chars().count(), MAX_LABEL_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn headings() {
        assert_eq!(bold_heading("**Plan** then").as_deref(), Some("Plan"));
        assert_eq!(bold_heading("**Pla"), None);
        assert_eq!(bold_heading("plain"), None);
    }

    #[test]
    fn paragraphs() {
        let mut p = ParagraphLabels::new();
        let mut out = Vec::new();
        p.push("Checking the input.\nIt has two", &mut out);
        p.push(" parts.\n\nNext step\nmore\n", &mut out);
        p.push(&format!("\n{}\n\nFinal", "x".repeat(200)), &mut out);
        p.finish(&mut out);
        assert_eq!(out, ["Checking the input.", "Next step", "Final"]);
    }
}
