//! Long explanations for `flowc explain`, each with a wrong and a fixed example.

use super::Code;

pub struct Explanation {
    pub code: Code,
    pub summary: &'static str,
    pub wrong: &'static str,
    pub fixed: &'static str,
}

pub fn explanation(code: Code) -> Explanation {
    Explanation { code, summary: code.title(), wrong: "", fixed: "" }
}
