//! The Cedar entities of one request, built from the grid services' own types.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use cedar_policy::{Entities, EntityId, EntityTypeName, EntityUid, Schema};
use serde_json::{json, Value};

use super::Action;
use crate::credential::VoIdentity;
use crate::error::{Error, Result};
use crate::vo::Fqan;

/// Who asks: a user acting in one VO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's certificate subject.
    pub subject: String,
    /// The VO of the credential used.
    pub vo: String,
    /// The FQANs held in that VO.
    pub fqans: Vec<Fqan>,
    /// Whether the user is a cluster administrator (the daemon's config lists them).
    pub cluster_admin: bool,
}

impl Principal {
    /// The principal of a verified VO credential.
    pub fn from_identity(id: &VoIdentity, cluster_admin: bool) -> Self {
        Principal {
            subject: id.subject.clone(),
            vo: id.vo.clone(),
            fqans: id.fqans.clone(),
            cluster_admin,
        }
    }
}

/// What is acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A queue and the VOs that may submit to it.
    Queue {
        /// Its name.
        name: String,
        /// The VOs whose queue lists name it.
        vos: Vec<String>,
    },
    /// A task of the job service.
    Task {
        /// Its id.
        id: String,
        /// Its owner's subject.
        owner: String,
        /// The VO it was submitted in.
        vo: String,
        /// Its queue.
        queue: String,
    },
    /// A process of the cluster.
    Process {
        /// Its global pid.
        gpid: u64,
        /// The subject of the grid user it runs for.
        owner: String,
        /// The VO it runs in.
        vo: String,
    },
    /// A DFS path.
    Path {
        /// Absolute path in the DFS.
        path: String,
        /// The user whose own directory it is in, if any.
        owner: Option<String>,
        /// The VO whose shared directory it is in, if any.
        vo: Option<String>,
    },
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Queue { name, .. } => write!(f, "queue {name}"),
            Resource::Task { id, .. } => write!(f, "task {id}"),
            Resource::Process { gpid, .. } => write!(f, "process {gpid}"),
            Resource::Path { path, .. } => write!(f, "path {path}"),
        }
    }
}

fn uid(kind: &str, id: &str) -> Result<EntityUid> {
    let t = EntityTypeName::from_str(&format!("Ssi::{kind}"))
        .map_err(|e| Error::Policy(format!("type {kind}: {e}")))?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

fn reference(kind: &str, id: &str) -> Value {
    json!({ "__entity": { "type": format!("Ssi::{kind}"), "id": id } })
}

fn entity(kind: &str, id: &str, attrs: Value, parents: Vec<Value>) -> Value {
    json!({ "uid": { "type": format!("Ssi::{kind}"), "id": id }, "attrs": attrs, "parents": parents })
}

/// Group and role entities of `fqans` with their parents; returns them and the principal's
/// direct parents.
fn vo_tree(fqans: &[Fqan], vo: &str, out: &mut Vec<Value>) -> Vec<Value> {
    let mut groups = BTreeSet::new();
    let mut direct = vec![reference("Vo", vo)];
    for f in fqans {
        for depth in 1..=f.groups.len() {
            groups.insert(f.groups[..depth].to_vec());
        }
        if f.role.is_some() {
            let parent = if f.is_root() {
                reference("Vo", &f.vo)
            } else {
                reference("Group", &f.group_path())
            };
            out.push(entity("Role", &f.to_string(), json!({}), vec![parent]));
            direct.push(reference("Role", &f.to_string()));
        } else if !f.is_root() {
            direct.push(reference("Group", &f.group_path()));
        }
    }
    for g in groups {
        let path = format!("/{vo}/{}", g.join("/"));
        let parent = if g.len() == 1 {
            reference("Vo", vo)
        } else {
            reference("Group", &format!("/{vo}/{}", g[..g.len() - 1].join("/")))
        };
        out.push(entity("Group", &path, json!({}), vec![parent]));
    }
    direct
}

fn principal_entity(p: &Principal, out: &mut Vec<Value>) -> Value {
    let parents = vo_tree(&p.fqans, &p.vo, out);
    let admin_of: Vec<Value> = p
        .fqans
        .iter()
        .filter(|f| f.is_root() && f.role.as_deref() == Some(crate::vo::ADMIN_ROLE))
        .map(|f| reference("Vo", &f.vo))
        .collect();
    let attrs = json!({
        "subject": p.subject,
        "vo": reference("Vo", &p.vo),
        "admin_of": admin_of,
        "cluster_admin": p.cluster_admin,
    });
    entity("User", &p.subject, attrs, parents)
}

/// The entity (and its ancestors) of `r`; returns the resource's kind and id.
fn resource_entity(r: &Resource, out: &mut Vec<Value>) -> (&'static str, String) {
    match r {
        Resource::Queue { name, vos } => {
            out.push(entity(
                "Queue",
                name,
                json!({}),
                vos.iter().map(|v| reference("Vo", v)).collect(),
            ));
            ("Queue", name.clone())
        }
        Resource::Task {
            id,
            owner,
            vo,
            queue,
        } => {
            let attrs = json!({ "owner": reference("User", owner), "vo": reference("Vo", vo), "queue": reference("Queue", queue) });
            out.push(entity("Task", id, attrs, vec![]));
            ("Task", id.clone())
        }
        Resource::Process { gpid, owner, vo } => {
            let attrs = json!({ "owner": reference("User", owner), "vo": reference("Vo", vo) });
            out.push(entity("Process", &gpid.to_string(), attrs, vec![]));
            ("Process", gpid.to_string())
        }
        Resource::Path { path, owner, vo } => {
            let mut attrs = serde_json::Map::new();
            if let Some(o) = owner {
                attrs.insert("owner".into(), reference("User", o));
            }
            if let Some(v) = vo {
                attrs.insert("vo".into(), reference("Vo", v));
            }
            // Every directory above is a parent, so `resource in Path::"/vo/atlas"` works.
            let trimmed = path.trim_end_matches('/');
            let mut ancestors = Vec::new();
            let mut cur = trimmed;
            while let Some(i) = cur.rfind('/') {
                cur = &cur[..i];
                ancestors.push(if cur.is_empty() { "/" } else { cur });
            }
            for (i, a) in ancestors.iter().enumerate() {
                let up = ancestors
                    .get(i + 1)
                    .map(|u| vec![reference("Path", u)])
                    .unwrap_or_default();
                out.push(entity("Path", a, json!({}), up));
            }
            let up = ancestors
                .first()
                .map(|u| vec![reference("Path", u)])
                .unwrap_or_default();
            let id = if trimmed.is_empty() { "/" } else { trimmed };
            out.push(entity("Path", id, Value::Object(attrs), up));
            ("Path", id.to_string())
        }
    }
}

/// The entities of one request and its principal, action and resource ids.
pub(super) fn build(
    schema: &Schema,
    p: &Principal,
    a: Action,
    r: &Resource,
) -> Result<(Entities, EntityUid, EntityUid, EntityUid)> {
    let mut list = Vec::new();
    let me = principal_entity(p, &mut list);
    list.push(me);
    let (kind, id) = resource_entity(r, &mut list);
    let entities = Entities::from_json_value(Value::Array(list), Some(schema))
        .map_err(|e| Error::Policy(format!("entities of {} on {r}: {e}", p.subject)))?;
    let action = EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("Ssi::Action").map_err(|e| Error::Policy(e.to_string()))?,
        EntityId::new(a.to_string()),
    );
    Ok((entities, uid("User", &p.subject)?, action, uid(kind, &id)?))
}
