//! Study roles and what each may do.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A study role, stored per OS user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Coordinator,
    Reader,
    Adjudicator,
    Pi,
    Admin,
}

/// Something a user may try to do that changes study data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Import patients, DXA, labs.
    Import,
    /// Answer screening criteria by hand.
    Screen,
    /// Add users and change roles.
    ManageUsers,
    /// Take reading work and submit blinded reads.
    Read,
    /// Record the final grade of a case the readers disagree on.
    Adjudicate,
    /// Run the model over the images, train a new version, choose the active one.
    Model,
}

impl Permission {
    pub fn describe(self) -> &'static str {
        match self {
            Permission::Import => "import clinical data",
            Permission::Screen => "answer screening criteria",
            Permission::ManageUsers => "manage users",
            Permission::Read => "read cases (readers only: a read must be blinded)",
            Permission::Adjudicate => "adjudicate cases",
            Permission::Model => "run or train the model",
        }
    }
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Coordinator,
        Role::Reader,
        Role::Adjudicator,
        Role::Pi,
        Role::Admin,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Reader => "reader",
            Role::Adjudicator => "adjudicator",
            Role::Pi => "pi",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do `p`. PIs are read-only.
    pub fn allows(self, p: Permission) -> bool {
        match p {
            Permission::Import | Permission::Screen => {
                matches!(self, Role::Coordinator | Role::Admin)
            }
            Permission::ManageUsers => self == Role::Admin,
            // Not admins: an admin sees every grade, so cannot read blinded
            // (an admin reads with `--as` a reader).
            Permission::Read => self == Role::Reader,
            Permission::Adjudicate => matches!(self, Role::Adjudicator | Role::Admin),
            Permission::Model => matches!(self, Role::Coordinator | Role::Admin),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.trim().to_ascii_lowercase();
        Role::ALL
            .into_iter()
            .find(|r| r.code() == l)
            .ok_or_else(|| {
                format!(
                    "unknown role '{l}' (expected coordinator, reader, adjudicator, pi or admin)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi_is_read_only_and_only_admin_manages_users() {
        for p in [
            Permission::Import,
            Permission::Screen,
            Permission::ManageUsers,
        ] {
            assert!(!Role::Pi.allows(p));
            assert!(!Role::Reader.allows(p));
            assert!(Role::Admin.allows(p));
        }
        assert!(Role::Coordinator.allows(Permission::Screen));
        assert!(!Role::Coordinator.allows(Permission::ManageUsers));
    }

    #[test]
    fn coordinators_and_admins_run_the_model() {
        for r in Role::ALL {
            assert_eq!(
                r.allows(Permission::Model),
                matches!(r, Role::Coordinator | Role::Admin),
                "{r}"
            );
        }
    }

    #[test]
    fn only_readers_read_and_adjudicators_adjudicate() {
        for r in Role::ALL {
            assert_eq!(r.allows(Permission::Read), r == Role::Reader, "{r}");
            assert_eq!(
                r.allows(Permission::Adjudicate),
                matches!(r, Role::Adjudicator | Role::Admin),
                "{r}"
            );
        }
    }
}
