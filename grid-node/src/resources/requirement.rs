//! Range requirements as a grid's resource selection writes them:
//! `cores>=64 && mem_gb>=128`, `arch == x86_64 || (free_cores > 8 && load < 4)`.
//!
//! Grammar (`&&` binds tighter than `||`):
//! ```text
//! expr := and ( "||" and )*
//! and  := term ( "&&" term )*
//! term := "(" expr ")" | NAME OP VALUE
//! OP   := ">=" | "<=" | "==" | "!=" | ">" | "<"
//! VALUE:= number | word | "quoted"
//! ```
//! Names are the fields of [`super::Summary`]; numbers compare as numbers, words as text
//! (only `==` and `!=`).

use super::Summary;
use crate::error::{Error, Result};

/// A parsed requirement.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    /// Both hold.
    And(Box<Requirement>, Box<Requirement>),
    /// Either holds.
    Or(Box<Requirement>, Box<Requirement>),
    /// `name op value`.
    Cmp(String, Op, Value),
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Num(f64),
    /// A word or quoted text.
    Text(String),
}

const NUMERIC: [&str; 8] = [
    "nodes",
    "cores",
    "free_cores",
    "mem_gb",
    "free_mem_gb",
    "load",
    "dfs_gb",
    "dfs_free_gb",
];
const TEXTUAL: [&str; 2] = ["arch", "os"];

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Requirement {
            text: self.text.to_string(),
            at: self.pos,
            reason: reason.into(),
        }
    }

    fn skip_ws(&mut self) {
        while self.rest().starts_with(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(tok) {
            self.pos += tok.len();
            return true;
        }
        false
    }

    fn word(&mut self) -> &'a str {
        self.skip_ws();
        let rest = self.rest();
        let n = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            .unwrap_or(rest.len());
        self.pos += n;
        &rest[..n]
    }

    fn expr(&mut self) -> Result<Requirement> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Requirement::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Requirement> {
        let mut left = self.term()?;
        while self.eat("&&") {
            left = Requirement::And(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Requirement> {
        if self.eat("(") {
            let e = self.expr()?;
            if !self.eat(")") {
                return Err(self.err("expected ')'"));
            }
            return Ok(e);
        }
        let name = self.word();
        if name.is_empty() {
            return Err(self.err("expected a name or '('"));
        }
        let numeric = NUMERIC.contains(&name);
        if !numeric && !TEXTUAL.contains(&name) {
            self.pos -= name.len();
            return Err(self.err(format!(
                "unknown name {name:?} (known: {}, {})",
                NUMERIC.join(", "),
                TEXTUAL.join(", ")
            )));
        }
        let ops = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        let op = ops
            .iter()
            .find(|(t, _)| self.eat(t))
            .map(|(_, o)| *o)
            .ok_or_else(|| self.err("expected one of >= <= == != > <"))?;
        let value = self.value()?;
        match (&value, numeric, op) {
            (Value::Num(_), true, _) | (Value::Text(_), false, Op::Eq | Op::Ne) => {}
            (Value::Text(t), true, _) => {
                return Err(self.err(format!("{name} is a number, not {t:?}")))
            }
            _ => return Err(self.err(format!("{name} is text: only == and != apply"))),
        }
        Ok(Requirement::Cmp(name.to_string(), op, value))
    }

    fn value(&mut self) -> Result<Value> {
        self.skip_ws();
        if self.eat("\"") {
            let end = self
                .rest()
                .find('"')
                .ok_or_else(|| self.err("unterminated quote"))?;
            let v = self.rest()[..end].to_string();
            self.pos += end + 1;
            return Ok(Value::Text(v));
        }
        let w = self.word();
        if w.is_empty() {
            return Err(self.err("expected a value"));
        }
        Ok(w.parse()
            .map(Value::Num)
            .unwrap_or_else(|_| Value::Text(w.to_string())))
    }
}

impl std::str::FromStr for Requirement {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let mut p = Parser { text, pos: 0 };
        let e = p.expr()?;
        p.skip_ws();
        if !p.rest().is_empty() {
            return Err(p.err("expected '&&', '||' or the end"));
        }
        Ok(e)
    }
}

fn number(s: &Summary, name: &str) -> Option<f64> {
    Some(match name {
        "nodes" => s.nodes as f64,
        "cores" => s.cores as f64,
        "free_cores" => s.free_cores as f64,
        "mem_gb" => s.mem_gb,
        "free_mem_gb" => s.free_mem_gb,
        "load" => s.load,
        "dfs_gb" => s.dfs_gb?,
        "dfs_free_gb" => s.dfs_free_gb?,
        _ => return None,
    })
}

impl Requirement {
    /// Whether `s` meets the requirement (a figure the cluster does not report, such as the
    /// DFS's when it has none, never matches).
    pub fn matches(&self, s: &Summary) -> bool {
        match self {
            Requirement::And(a, b) => a.matches(s) && b.matches(s),
            Requirement::Or(a, b) => a.matches(s) || b.matches(s),
            Requirement::Cmp(name, op, Value::Num(v)) => {
                number(s, name).is_some_and(|x| match op {
                    Op::Ge => x >= *v,
                    Op::Le => x <= *v,
                    Op::Gt => x > *v,
                    Op::Lt => x < *v,
                    Op::Eq => x == *v,
                    Op::Ne => x != *v,
                })
            }
            Requirement::Cmp(name, op, Value::Text(t)) => {
                let have = if name == "arch" { &s.arch } else { &s.os };
                (have == t) == (*op == Op::Eq)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cluster() -> Summary {
        Summary {
            nodes: 3,
            cores: 96,
            free_cores: 40,
            mem_gb: 192.0,
            free_mem_gb: 100.0,
            load: 56.0,
            arch: "x86_64".into(),
            os: "debian".into(),
            ..Summary::default()
        }
    }

    fn m(s: &str) -> bool {
        s.parse::<Requirement>()
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(&cluster())
    }

    #[test]
    fn evaluates_ranges_and_precedence() {
        assert!(m("cores>=64 && mem_gb>=128"));
        assert!(!m("cores>=64 && mem_gb>=256"));
        assert!(m("cores > 200 || free_cores >= 40"));
        assert!(
            !m("cores > 200 || free_cores >= 40 && load < 10"),
            "&& binds tighter"
        );
        assert!(m("(cores > 200 || free_cores >= 40) && arch == x86_64"));
        assert!(m("os != \"centos\" && nodes == 3 && free_mem_gb <= 100.0"));
        assert!(!m("dfs_gb > 0"), "no DFS figure: no match");
    }

    #[test]
    fn errors_name_the_place_and_what_was_expected() {
        for (text, at, why) in [
            ("cores >= ", 9, "expected a value"),
            ("cpus >= 4", 0, "unknown name \"cpus\""),
            ("cores => 4", 6, "expected one of"),
            ("cores >= 4 &&", 13, "expected a name"),
            ("(cores >= 4", 11, "expected ')'"),
            (
                "cores >= 4 mem_gb >= 2",
                11,
                "expected '&&', '||' or the end",
            ),
            ("arch > x86", 10, "only == and != apply"),
            ("mem_gb >= lots", 14, "is a number"),
        ] {
            match text.parse::<Requirement>() {
                Err(Error::Requirement {
                    at: got, reason, ..
                }) => {
                    assert_eq!(got, at, "{text}: {reason}");
                    assert!(reason.contains(why), "{text}: {reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
