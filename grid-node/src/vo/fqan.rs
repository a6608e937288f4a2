//! Fully qualified attribute names, the VOMS way of saying "member of this VO, in this group,
//! with this role": `/vo[/group...][/Role=r][/Capability=c]`.
//!
//! `Role=NULL` and `Capability=NULL` (as VOMS prints them) mean "none" and are not printed back.
//! Capability is deprecated in VOMS but still parsed, so that FQANs from other grids round-trip.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One FQAN: a VO, a group path inside it, and optionally a role and a capability.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fqan {
    /// The VO (the first path element).
    pub vo: String,
    /// Groups below the VO, outermost first (`/atlas/prod/sim` -> `["prod", "sim"]`).
    pub groups: Vec<String>,
    /// The role held in that group, if any.
    pub role: Option<String>,
    /// The capability, if any.
    pub capability: Option<String>,
}

/// Checks a VO, group, role or capability name: letters, digits, `.`, `_`, `-`, not empty,
/// at most 64 bytes, not starting with `.` (so no `.` or `..` path elements).
pub fn check_name(what: &str, name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err(format!("empty {what} name"));
    }
    if name.len() > 64 {
        return Err(format!("{what} name {name:?} is longer than 64 bytes"));
    }
    if name.starts_with('.') {
        return Err(format!("{what} name {name:?} starts with '.'"));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "{what} name {name:?} has {c:?} (allowed: letters, digits, . _ -)"
        )),
        None => Ok(()),
    }
}

impl Fqan {
    /// The FQAN of plain membership of `vo`.
    pub fn vo(vo: &str) -> Result<Self> {
        Self::new(vo, &[], None)
    }

    /// An FQAN from its parts, checked.
    pub fn new(vo: &str, groups: &[&str], role: Option<&str>) -> Result<Self> {
        let f = Fqan {
            vo: vo.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            role: role.map(str::to_string),
            capability: None,
        };
        f.check().map_err(|reason| Error::Fqan {
            text: f.to_string(),
            reason,
        })?;
        Ok(f)
    }

    fn check(&self) -> std::result::Result<(), String> {
        check_name("vo", &self.vo)?;
        for g in &self.groups {
            check_name("group", g)?;
        }
        if let Some(r) = &self.role {
            check_name("role", r)?;
        }
        if let Some(c) = &self.capability {
            check_name("capability", c)?;
        }
        Ok(())
    }

    /// The group path, `/vo/group/...`, without role or capability.
    pub fn group_path(&self) -> String {
        let mut s = format!("/{}", self.vo);
        for g in &self.groups {
            s.push('/');
            s.push_str(g);
        }
        s
    }

    /// Whether this FQAN is at the VO's root (no group).
    pub fn is_root(&self) -> bool {
        self.groups.is_empty()
    }
}

impl fmt::Display for Fqan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.group_path())?;
        if let Some(r) = &self.role {
            write!(f, "/Role={r}")?;
        }
        if let Some(c) = &self.capability {
            write!(f, "/Capability={c}")?;
        }
        Ok(())
    }
}

/// `Some(value)` of a `Key=value` element, `None` for `Key=NULL`.
fn attribute(value: &str) -> Option<String> {
    (value != "NULL").then(|| value.to_string())
}

impl FromStr for Fqan {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let err = |reason: String| Error::Fqan {
            text: text.to_string(),
            reason,
        };
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| err("does not start with '/'".into()))?;
        let mut f = Fqan {
            vo: String::new(),
            groups: Vec::new(),
            role: None,
            capability: None,
        };
        let mut seen_role = false;
        let mut seen_cap = false;
        for (i, part) in rest.split('/').enumerate() {
            if let Some(r) = part.strip_prefix("Role=") {
                if i == 0 || seen_role || seen_cap {
                    return Err(err(
                        "Role= must follow the groups, once, before Capability=".into(),
                    ));
                }
                seen_role = true;
                f.role = attribute(r);
            } else if let Some(c) = part.strip_prefix("Capability=") {
                if i == 0 || seen_cap {
                    return Err(err("Capability= must come last, once".into()));
                }
                seen_cap = true;
                f.capability = attribute(c);
            } else if seen_role || seen_cap {
                return Err(err(format!("group {part:?} after Role= or Capability=")));
            } else if i == 0 {
                f.vo = part.to_string();
            } else {
                f.groups.push(part.to_string());
            }
        }
        f.check().map_err(err)?;
        Ok(f)
    }
}

impl TryFrom<String> for Fqan {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Fqan> for String {
    fn from(f: Fqan) -> String {
        f.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> Fqan {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_and_prints_every_form() {
        for s in [
            "/atlas",
            "/atlas/prod",
            "/atlas/prod/sim",
            "/atlas/Role=admin",
            "/atlas/prod/Role=pilot",
            "/atlas/prod/Role=pilot/Capability=x",
            "/atlas/Capability=x",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
        let f = p("/atlas/prod/sim/Role=pilot");
        assert_eq!(f.vo, "atlas");
        assert_eq!(f.groups, ["prod", "sim"]);
        assert_eq!(f.role.as_deref(), Some("pilot"));
        assert_eq!(f.group_path(), "/atlas/prod/sim");
    }

    #[test]
    fn voms_null_attributes_mean_none() {
        let f = p("/cms/Role=NULL/Capability=NULL");
        assert_eq!(f, Fqan::vo("cms").unwrap());
        assert_eq!(f.to_string(), "/cms");
    }

    #[test]
    fn refuses_malformed_fqans_with_a_reason() {
        for (s, why) in [
            ("atlas", "does not start"),
            ("/", "empty vo"),
            ("//prod", "empty vo"),
            ("/atlas//prod", "empty group"),
            ("/atlas/", "empty group"),
            ("/Role=admin", "Role= must follow"),
            ("/atlas/Role=a/Role=b", "once"),
            ("/atlas/Role=a/prod", "after Role="),
            ("/atlas/Capability=c/Role=a", "Role= must follow"),
            ("/atlas/../etc", "starts with '.'"),
            ("/at las", "' '"),
            ("/atlas/Role=", "empty role"),
        ] {
            let e = s.parse::<Fqan>().expect_err(s).to_string();
            assert!(e.contains(why), "{s}: {e}");
            assert!(
                e.contains(&format!("{s:?}")),
                "{s}: error does not name it: {e}"
            );
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let f = p("/atlas/prod/Role=pilot");
        let j = serde_json::to_string(&f).unwrap();
        assert_eq!(j, "\"/atlas/prod/Role=pilot\"");
        assert_eq!(serde_json::from_str::<Fqan>(&j).unwrap(), f);
        assert!(serde_json::from_str::<Fqan>("\"atlas\"").is_err());
    }
}
