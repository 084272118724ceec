//! Text for a terminal: what a user's prompt, a file name or an imported PNG carries is shown,
//! never obeyed. Escape sequences in it could retitle the window, clear the screen or rewrite
//! earlier lines.

/// `text` with every control character but newline and tab written out as `\u{..}` (JSON
/// output has none: its strings escape them already).
pub fn safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let control = c.is_control() && c != '\n' && c != '\t';
        if control {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether standard error is a terminal (colours and progress bars only then).
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_not_obeyed() {
        let hostile = "a cat\u{1b}]0;owned\u{7}\u{1b}[2J\r\u{9b}31m";
        let shown = safe(hostile);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert_eq!(
            shown,
            "a cat\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{d}\\u{9b}31m"
        );
        assert_eq!(safe("two\nlines\tand a tab"), "two\nlines\tand a tab");
    }
}
