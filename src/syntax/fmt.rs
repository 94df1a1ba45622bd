//! `flowc fmt`: the canonical layout of a `.flow` file, line by line.
//!
//! Each line keeps its statements and its comments where they were; what
//! changes is the whitespace: two spaces of indentation per open bracket,
//! one space between tokens (none before `,` and `;`, one after), one around
//! `->` and inside one-line braces, route arrows aligned down a run of
//! routes at one depth, at most one blank line in a row and none at the
//! edges of a block, no trailing spaces, one final line end. Strings and
//! comments are copied as written; a block comment over several lines is
//! left as it is.

/// A line cut into code and what is copied as written (strings, comments).
#[derive(Debug, Default)]
struct Line {
    /// Code, with each string (and one-line block comment) replaced by one
    /// placeholder character of the private use area.
    code: String,
    strings: Vec<String>,
    /// A trailing `//` or `/* */` comment.
    comment: String,
    /// The line lies in a block comment begun on an earlier line.
    verbatim: bool,
}

/// The canonical layout of `text`. The caller makes sure the text parses:
/// the layout of text that does not is not defined.
pub fn format(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<(Line, String)> = Vec::new();
    let mut in_comment = false;
    for raw in text.lines() {
        let raw = raw.trim_end_matches('\r');
        let (line, still) = cut(raw, in_comment);
        lines.push((line, raw.to_string()));
        in_comment = still;
    }
    let mut out: Vec<Laid> = Vec::new();
    let mut depth: usize = 0;
    for (line, raw) in &lines {
        if line.verbatim {
            out.push(Laid {
                depth: VERBATIM,
                body: raw.clone(),
                arrow: None,
                comment: String::new(),
            });
            continue;
        }
        let code = tidy(&line.code);
        let closes = code
            .chars()
            .take_while(|c| matches!(c, '}' | ')' | ']'))
            .count();
        let own = depth.saturating_sub(closes);
        let arrow = arrow_at(&code).map(|at| restore(&code[..at], &line.strings).len());
        let body = restore(&code, &line.strings);
        out.push(Laid {
            depth: own,
            body,
            arrow,
            comment: line.comment.clone(),
        });
        for c in code.chars() {
            match c {
                '{' | '(' | '[' => depth += 1,
                '}' | ')' | ']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    align_arrows(&mut out);
    align_comments(&mut out);
    let mut text = String::new();
    let mut blank = 0;
    let mut previous_opens = true;
    for (k, laid) in out.iter().enumerate() {
        let depth = &laid.depth;
        let body = &laid.body;
        if body.is_empty() && *depth != VERBATIM {
            blank += 1;
            continue;
        }
        let closes_block = body.starts_with('}') || body.starts_with(')');
        if blank > 0 && !previous_opens && !closes_block && k > 0 {
            text.push('\n');
        }
        blank = 0;
        if *depth == VERBATIM {
            text.push_str(body);
        } else {
            text.push_str(&"  ".repeat(*depth));
            text.push_str(body);
        }
        text.push('\n');
        previous_opens = text_opens(body);
    }
    text
}

/// A line as laid out: its depth, its code (strings restored), where its
/// route arrow stands, and its trailing comment (joined last).
struct Laid {
    depth: usize,
    body: String,
    arrow: Option<usize>,
    comment: String,
}

/// The depth of a line copied as written (inside a block comment).
const VERBATIM: usize = usize::MAX;

/// Whether a line ends by opening a block (a blank line may not follow).
fn text_opens(body: &str) -> bool {
    let code = body.split("//").next().unwrap_or("").trim_end();
    code.ends_with('{') || code.ends_with('(') || code.ends_with('[')
}

/// Cuts a line into code, strings and a trailing comment. `in_comment`:
/// the line starts inside a block comment; returns whether it ends in one.
fn cut(raw: &str, in_comment: bool) -> (Line, bool) {
    let mut line = Line::default();
    if in_comment {
        line.verbatim = true;
        return (line, !raw.contains("*/"));
    }
    let chars: Vec<char> = raw.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            let end = (i + 1).min(chars.len());
            line.code.push(placeholder(line.strings.len()));
            line.strings.push(chars[start..end].iter().collect());
            i = end;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            line.comment = chars[i..].iter().collect::<String>().trim_end().to_string();
            break;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            let rest: String = chars[i..].iter().collect();
            match rest[2..].find("*/") {
                // A comment closed on this line stays in the code, as written.
                Some(end) => {
                    let comment = &rest[..end + 4];
                    line.code.push(placeholder(line.strings.len()));
                    line.strings.push(comment.to_string());
                    i += comment.chars().count();
                    continue;
                }
                None => {
                    line.comment = rest.trim_end().to_string();
                    return (line, true);
                }
            }
        }
        line.code.push(c);
        i += 1;
    }
    (line, false)
}

const PLACEHOLDERS: u32 = 0xF0000;

/// The placeholder of the k-th string of a line (code never holds these:
/// outside strings and comments the language is ASCII).
fn placeholder(k: usize) -> char {
    char::from_u32(PLACEHOLDERS + k as u32).unwrap_or('\u{F0000}')
}

/// Puts the strings back in place of their placeholders.
fn restore(code: &str, strings: &[String]) -> String {
    let mut out = String::with_capacity(code.len());
    for c in code.chars() {
        match (c as u32)
            .checked_sub(PLACEHOLDERS)
            .and_then(|k| strings.get(k as usize))
        {
            Some(s) => out.push_str(s),
            None => out.push(c),
        }
    }
    out
}

/// One space between tokens; none before `,` `;` `)` `]` or after `(` `[`;
/// one after `,` and `;`; one around `->`; one inside one-line braces.
fn tidy(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let chars: Vec<char> = code.trim().chars().collect();
    let mut i = 0;
    let space = |out: &mut String| {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => space(&mut out),
            '-' if chars.get(i + 1) == Some(&'>') => {
                space(&mut out);
                out.push_str("->");
                i += 1;
                if i + 1 < chars.len() {
                    out.push(' ');
                }
            }
            ',' | ';' => {
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push(c);
                if i + 1 < chars.len() {
                    out.push(' ');
                }
            }
            ')' | ']' => {
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push(c);
            }
            '{' => {
                space(&mut out);
                out.push('{');
                if i + 1 < chars.len() {
                    out.push(' ');
                }
            }
            '}' => {
                space(&mut out);
                out.push('}');
            }
            '(' | '[' => {
                out.push(c);
                while chars.get(i + 1).is_some_and(|n| *n == ' ' || *n == '\t') {
                    i += 1;
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    out.trim().to_string()
}

/// Where a line's route arrow (` -> `) stands, in bytes, for alignment.
fn arrow_at(code: &str) -> Option<usize> {
    let at = code.find(" -> ")?;
    let before = &code[..at];
    // Only a route at the line's own level: no bracket open before it.
    let open = before
        .chars()
        .filter(|c| matches!(c, '{' | '(' | '['))
        .count();
    let close = before
        .chars()
        .filter(|c| matches!(c, '}' | ')' | ']'))
        .count();
    (open == close).then_some(at)
}

/// Runs of consecutive lines at one depth for which `member` holds.
fn runs(lines: &[Laid], member: impl Fn(&Laid) -> bool) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    let mut k = 0;
    while k < lines.len() {
        if !member(&lines[k]) {
            k += 1;
            continue;
        }
        let depth = lines[k].depth;
        let mut end = k;
        while end < lines.len() && member(&lines[end]) && lines[end].depth == depth {
            end += 1;
        }
        found.push(k..end);
        k = end;
    }
    found
}

/// Pads the part before `->` in each run of consecutive routes at one depth.
fn align_arrows(lines: &mut [Laid]) {
    for run in runs(lines, |l| l.arrow.is_some()) {
        let width = |l: &Laid| l.arrow.map_or(0, |at| l.body[..at].chars().count());
        let widest = lines[run.clone()].iter().map(width).max().unwrap_or(0);
        for line in &mut lines[run] {
            let (w, at) = (width(line), line.arrow.unwrap_or(0));
            line.body = format!(
                "{}{}{}",
                &line.body[..at],
                " ".repeat(widest - w),
                &line.body[at..]
            );
        }
    }
}

/// Joins trailing comments to their code, one space after the longest line
/// of each run of consecutive commented lines at one depth; a line that is
/// only a comment keeps it alone.
fn align_comments(lines: &mut [Laid]) {
    for run in runs(lines, |l| !l.comment.is_empty() && !l.body.is_empty()) {
        let widest = lines[run.clone()]
            .iter()
            .map(|l| l.body.chars().count())
            .max()
            .unwrap_or(0);
        for line in &mut lines[run] {
            let pad = widest - line.body.chars().count() + 1;
            line.body = format!("{}{}{}", line.body, " ".repeat(pad), line.comment);
        }
    }
    for line in lines.iter_mut().filter(|l| l.body.is_empty()) {
        line.body = std::mem::take(&mut line.comment);
    }
}
