//! Virtual organisations: who belongs to which VO, in which groups, with which roles.
//!
//! A VO is kept in the replicated store ([`crate::store::Table::Vos`]) as one record; every
//! change is a compare-and-swap of that record, so two admins changing one VO at once on two
//! nodes both get their change applied (one retries) and nobody's is lost.
//!
//! Membership is a set of FQANs per subject: `add-user atlas SUBJECT --group prod --role pilot`
//! adds `/atlas/prod/Role=pilot`; every member also holds `/atlas`. The role `admin` at the VO's
//! root (`/atlas/Role=admin`) makes a VO administrator (see the default policies).

mod fqan;

pub use fqan::{check_name, Fqan};

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{self, GridStore, Table};

/// The role that makes a member an administrator of their VO.
pub const ADMIN_ROLE: &str = "admin";

/// A virtual organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vo {
    /// Its name, the first element of its FQANs.
    pub name: String,
    /// Queues its members may submit to (see `docs/GRID.md`).
    pub queues: BTreeSet<String>,
    /// Members by certificate subject.
    pub members: BTreeMap<String, Member>,
}

/// One member of a VO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's certificate subject (as [`crate::credential::Subject`] prints it).
    pub subject: String,
    /// FQANs held, always including the VO root.
    pub fqans: BTreeSet<Fqan>,
}

impl Member {
    /// Whether the member holds the admin role at the VO root.
    pub fn is_admin(&self) -> bool {
        self.fqans
            .iter()
            .any(|f| f.is_root() && f.role.as_deref() == Some(ADMIN_ROLE))
    }
}

/// The FQAN that `group` (`prod/sim`, `/prod/sim` or empty) and `role` name in `vo`.
fn fqan_for(vo: &str, group: Option<&str>, role: Option<&str>) -> Result<Fqan> {
    let groups: Vec<&str> = group
        .map(|g| g.trim_matches('/'))
        .filter(|g| !g.is_empty())
        .map(|g| g.split('/').collect())
        .unwrap_or_default();
    Fqan::new(vo, &groups, role)
}

/// The VO registry over the replicated store.
#[derive(Debug, Clone, Copy)]
pub struct VoRegistry<'a> {
    store: &'a dyn GridStore,
}

impl<'a> VoRegistry<'a> {
    /// The registry kept in `store`.
    pub fn new(store: &'a dyn GridStore) -> Self {
        VoRegistry { store }
    }

    /// Creates VO `name` with the queue `default`; refused if it exists.
    pub async fn create(&self, name: &str) -> Result<Vo> {
        check_name("vo", name).map_err(|reason| Error::Vo {
            vo: name.to_string(),
            reason,
        })?;
        let vo = Vo {
            name: name.to_string(),
            queues: BTreeSet::from(["default".to_string()]),
            members: BTreeMap::new(),
        };
        if !store::cas_json(self.store, Table::Vos, name, None, Some(&vo)).await? {
            return Err(Error::Vo {
                vo: name.to_string(),
                reason: "already exists".into(),
            });
        }
        Ok(vo)
    }

    /// Deletes VO `name`; refused if it does not exist.
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.update(name, |_| Ok(None)).await.map(|_| ())
    }

    /// Every VO, by name.
    pub async fn list(&self) -> Result<Vec<Vo>> {
        let all = store::scan_json::<Vo>(self.store, Table::Vos, "").await?;
        Ok(all.into_iter().map(|(_, v)| v).collect())
    }

    /// VO `name`.
    pub async fn show(&self, name: &str) -> Result<Vo> {
        match store::get_json::<Vo>(self.store, Table::Vos, name).await? {
            Some((vo, _)) => Ok(vo),
            None => Err(unknown(name)),
        }
    }

    /// Gives `subject` membership of `vo` (if not yet) and the FQAN that `group` and `role`
    /// name; returns the member's FQANs.
    pub async fn add_user(
        &self,
        vo: &str,
        subject: &str,
        group: Option<&str>,
        role: Option<&str>,
    ) -> Result<Member> {
        if subject.trim().is_empty() {
            return Err(Error::Vo {
                vo: vo.to_string(),
                reason: "empty subject".into(),
            });
        }
        let fqan = fqan_for(vo, group, role)?;
        let root = Fqan::vo(vo)?;
        let v = self
            .update(vo, |mut v| {
                let m = v
                    .members
                    .entry(subject.to_string())
                    .or_insert_with(|| Member {
                        subject: subject.to_string(),
                        fqans: BTreeSet::new(),
                    });
                m.fqans.insert(root.clone());
                m.fqans.insert(fqan.clone());
                Ok(Some(v))
            })
            .await?;
        v.and_then(|v| v.members.get(subject).cloned())
            .ok_or_else(|| Error::Store(format!("vo {vo}: member {subject} vanished")))
    }

    /// Without `group` and `role`: removes `subject` from `vo`. With them: removes that FQAN
    /// only (the member stays, holding at least the VO root).
    pub async fn remove_user(
        &self,
        vo: &str,
        subject: &str,
        group: Option<&str>,
        role: Option<&str>,
    ) -> Result<()> {
        let fqan = fqan_for(vo, group, role)?;
        self.update(vo, |mut v| {
            let not_member = || Error::Vo {
                vo: vo.to_string(),
                reason: format!("{subject} is not a member"),
            };
            if fqan.is_root() && fqan.role.is_none() {
                v.members.remove(subject).ok_or_else(not_member)?;
            } else {
                let m = v.members.get_mut(subject).ok_or_else(not_member)?;
                if !m.fqans.remove(&fqan) {
                    return Err(Error::Vo {
                        vo: vo.to_string(),
                        reason: format!("{subject} does not hold {fqan}"),
                    });
                }
            }
            Ok(Some(v))
        })
        .await
        .map(|_| ())
    }

    /// The member record of `subject` in `vo`; refused if not a member.
    pub async fn member(&self, vo: &str, subject: &str) -> Result<Member> {
        self.show(vo)
            .await?
            .members
            .remove(subject)
            .ok_or_else(|| Error::Vo {
                vo: vo.to_string(),
                reason: format!("{subject} is not a member"),
            })
    }

    /// Sets the queues members of `vo` may submit to.
    pub async fn set_queues(&self, vo: &str, queues: &[&str]) -> Result<Vo> {
        for q in queues {
            check_name("queue", q).map_err(|reason| Error::Vo {
                vo: vo.to_string(),
                reason,
            })?;
        }
        let v = self
            .update(vo, |mut v| {
                v.queues = queues.iter().map(|q| q.to_string()).collect();
                Ok(Some(v))
            })
            .await?;
        v.ok_or_else(|| unknown(vo))
    }

    async fn update(
        &self,
        vo: &str,
        mut change: impl FnMut(Vo) -> Result<Option<Vo>>,
    ) -> Result<Option<Vo>> {
        store::update_json::<Vo, _>(self.store, Table::Vos, vo, |cur| match cur {
            Some(v) => change(v),
            None => Err(unknown(vo)),
        })
        .await
    }
}

fn unknown(vo: &str) -> Error {
    Error::Vo {
        vo: vo.to_string(),
        reason: "no such vo".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    const ALICE: &str = "CN=alice,O=grid";

    #[tokio::test]
    async fn create_list_show_delete() {
        let s = MemStore::new();
        let r = VoRegistry::new(&s);
        r.create("atlas").await.unwrap();
        r.create("cms").await.unwrap();
        let e = r.create("atlas").await.unwrap_err().to_string();
        assert_eq!(e, "vo atlas: already exists");
        assert!(r.create("bad/name").await.is_err());
        let names: Vec<_> = r
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["atlas", "cms"]);
        r.delete("cms").await.unwrap();
        assert_eq!(
            r.delete("cms").await.unwrap_err().to_string(),
            "vo cms: no such vo"
        );
        assert_eq!(r.show("atlas").await.unwrap().queues.len(), 1);
    }

    #[tokio::test]
    async fn members_get_fqans_from_groups_and_roles() {
        let s = MemStore::new();
        let r = VoRegistry::new(&s);
        r.create("atlas").await.unwrap();
        r.add_user("atlas", ALICE, Some("prod/sim"), Some("pilot"))
            .await
            .unwrap();
        let m = r
            .add_user("atlas", ALICE, None, Some("admin"))
            .await
            .unwrap();
        let got: Vec<String> = m.fqans.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            got,
            ["/atlas", "/atlas/Role=admin", "/atlas/prod/sim/Role=pilot"]
        );
        assert!(m.is_admin());

        r.remove_user("atlas", ALICE, None, Some("admin"))
            .await
            .unwrap();
        assert!(!r.member("atlas", ALICE).await.unwrap().is_admin());
        let e = r
            .remove_user("atlas", ALICE, Some("x"), None)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "vo atlas: CN=alice,O=grid does not hold /atlas/x"
        );
        r.remove_user("atlas", ALICE, None, None).await.unwrap();
        assert!(r.member("atlas", ALICE).await.is_err());
        assert!(r.add_user("nope", ALICE, None, None).await.is_err());
        assert!(r
            .add_user("atlas", ALICE, Some("../x"), None)
            .await
            .is_err());
    }
}
