//! The name table: who holds which name, and the limits on what a
//! connection may hold. Plain `&mut self` state with small verbs; no I/O,
//! no locks (the service keeps it behind one mutex), unit-tested here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use super::{check_name, Entry, NameError, NameLimits};
use crate::address::Address;

/// A registered entry and the connection that holds it.
#[derive(Debug)]
struct Held {
    entry: Entry,
    owner: u64,
}

/// What a registration did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Registered {
    /// The connection had never registered a name before: the service must
    /// start watching for its close.
    pub(crate) first_for_connection: bool,
}

/// Every registered name, by name (ordered, for prefix queries), and the
/// names each connection holds.
///
/// Invariant: a name is in `entries` with owner `c` if and only if it is
/// in `connections[c]`. A connection stays in `connections` (perhaps with
/// no names) from its first registration until [`Table::connection_closed`],
/// so its close is watched once.
#[derive(Debug, Default)]
pub(crate) struct Table {
    entries: BTreeMap<String, Held>,
    connections: HashMap<u64, BTreeSet<String>>,
}

impl Table {
    /// Registers `entry` for connection `owner`, or replaces the owner's own
    /// earlier entry of that name.
    pub(crate) fn register(
        &mut self,
        owner: u64,
        entry: Entry,
        limits: &NameLimits,
    ) -> Result<Registered, NameError> {
        check_entry(&entry, limits)?;
        let held = self.connections.get(&owner).map_or(0, BTreeSet::len);
        match self.entries.get(&entry.name) {
            Some(h) if h.owner != owner => return Err(NameError::Taken(entry.name)),
            Some(_) => {}
            None if held >= limits.max_names_per_connection => {
                return Err(NameError::TooManyNames {
                    limit: limits.max_names_per_connection,
                })
            }
            None if self.entries.len() >= limits.max_names => {
                return Err(NameError::Full {
                    limit: limits.max_names,
                })
            }
            None => {}
        }
        let first_for_connection = !self.connections.contains_key(&owner);
        self.connections
            .entry(owner)
            .or_default()
            .insert(entry.name.clone());
        self.entries
            .insert(entry.name.clone(), Held { entry, owner });
        Ok(Registered {
            first_for_connection,
        })
    }

    /// Removes `name` if `owner` holds it: whether it was there.
    pub(crate) fn unregister(&mut self, owner: u64, name: &str) -> Result<bool, NameError> {
        match self.entries.get(name) {
            None => Ok(false),
            Some(h) if h.owner != owner => Err(NameError::NotOwner(name.to_string())),
            Some(_) => {
                self.entries.remove(name);
                if let Some(names) = self.connections.get_mut(&owner) {
                    names.remove(name);
                }
                Ok(true)
            }
        }
    }

    /// The entry registered under `name`.
    pub(crate) fn lookup(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name).map(|h| &h.entry)
    }

    /// The entries whose names start with `prefix`, in name order.
    pub(crate) fn list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(name, _)| name.starts_with(prefix))
            .map(|(_, h)| &h.entry)
    }

    /// The first entry under `prefix` whose name comes after `after` (or
    /// the first of all, for `None`): a watch's snapshot, read one entry at
    /// a time so that it holds no copy of the table.
    pub(crate) fn next_after(&self, prefix: &str, after: Option<&str>) -> Option<&Entry> {
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Included(prefix),
        };
        self.entries
            .range::<str, _>((start, Bound::Unbounded))
            .next()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, h)| &h.entry)
    }

    /// Forgets connection `owner`: the names it held, now removed.
    pub(crate) fn connection_closed(&mut self, owner: u64) -> Vec<String> {
        let names = self.connections.remove(&owner).unwrap_or_default();
        for name in &names {
            self.entries.remove(name);
        }
        names.into_iter().collect()
    }

    /// Names registered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Whether `entry` may be registered at all, whoever asks.
fn check_entry(entry: &Entry, limits: &NameLimits) -> Result<(), NameError> {
    check_name(&entry.name, limits.max_name_len).map_err(NameError::InvalidName)?;
    if entry.address.len() > limits.max_address_len {
        return Err(NameError::InvalidAddress(format!(
            "an address is at most {} bytes; this one has {}",
            limits.max_address_len,
            entry.address.len()
        )));
    }
    match entry.address.parse::<Address>() {
        Ok(Address::Name(_)) => {
            return Err(NameError::InvalidAddress(format!(
                "`{}` is a name; register the `tcp://` or `unix://` address the server listens on",
                entry.address
            )))
        }
        Ok(_) => {}
        Err(e) => return Err(NameError::InvalidAddress(e.to_string())),
    }
    if entry.metadata.len() > limits.max_metadata_entries {
        return Err(NameError::InvalidMetadata(format!(
            "at most {} entries; this has {}",
            limits.max_metadata_entries,
            entry.metadata.len()
        )));
    }
    let bytes: usize = entry.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > limits.max_metadata_bytes {
        return Err(NameError::InvalidMetadata(format!(
            "at most {} bytes of keys and values; this has {bytes}",
            limits.max_metadata_bytes
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.into(),
            address: "tcp://127.0.0.1:9099".into(),
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn the_owner_may_register_again_and_others_are_refused() {
        let limits = NameLimits::default();
        let mut t = Table::default();
        assert!(
            t.register(1, entry("a"), &limits)
                .unwrap()
                .first_for_connection
        );
        let mut moved = entry("a");
        moved.address = "unix:///run/a.sock".into();
        assert!(!t.register(1, moved, &limits).unwrap().first_for_connection);
        assert_eq!(t.lookup("a").unwrap().address, "unix:///run/a.sock");
        assert_eq!(
            t.register(2, entry("a"), &limits),
            Err(NameError::Taken("a".into()))
        );
        assert_eq!(t.unregister(2, "a"), Err(NameError::NotOwner("a".into())));
        assert_eq!(t.unregister(1, "a"), Ok(true));
        assert_eq!(t.unregister(1, "a"), Ok(false));
        assert!(t.register(2, entry("a"), &limits).is_ok());
    }

    #[test]
    fn limits_per_connection_and_in_all() {
        let limits = NameLimits {
            max_names_per_connection: 2,
            max_names: 3,
            ..NameLimits::default()
        };
        let mut t = Table::default();
        t.register(1, entry("a"), &limits).unwrap();
        t.register(1, entry("b"), &limits).unwrap();
        assert_eq!(
            t.register(1, entry("c"), &limits),
            Err(NameError::TooManyNames { limit: 2 })
        );
        // Registering a name it holds again is no new name.
        assert!(t.register(1, entry("b"), &limits).is_ok());
        t.register(2, entry("c"), &limits).unwrap();
        assert_eq!(
            t.register(3, entry("d"), &limits),
            Err(NameError::Full { limit: 3 })
        );
        assert_eq!(t.connection_closed(1), ["a", "b"]);
        assert_eq!(t.len(), 1);
        assert!(t.register(3, entry("d"), &limits).is_ok());
    }

    #[test]
    fn entries_are_checked() {
        let limits = NameLimits::default();
        let mut t = Table::default();
        for bad in ["", "has space", "slash/no", "é"] {
            assert!(matches!(
                t.register(1, entry(bad), &limits),
                Err(NameError::InvalidName(_))
            ));
        }
        let long = "n".repeat(limits.max_name_len + 1);
        assert!(matches!(
            t.register(1, entry(&long), &limits),
            Err(NameError::InvalidName(_))
        ));
        for address in ["127.0.0.1:80", "name://other", ""] {
            let mut e = entry("a");
            e.address = address.into();
            assert!(matches!(
                t.register(1, e, &limits),
                Err(NameError::InvalidAddress(_))
            ));
        }
        let mut e = entry("a");
        e.metadata
            .insert("k".into(), "v".repeat(limits.max_metadata_bytes));
        assert!(matches!(
            t.register(1, e, &limits),
            Err(NameError::InvalidMetadata(_))
        ));
        let mut e = entry("a");
        e.metadata = (0..=limits.max_metadata_entries)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        assert!(matches!(
            t.register(1, e, &limits),
            Err(NameError::InvalidMetadata(_))
        ));
        assert_eq!(t.len(), 0);
        // A refused first registration leaves no record of the connection.
        assert!(t.connections.is_empty());
    }

    #[test]
    fn prefixes_list_in_order_and_snapshots_step_through() {
        let limits = NameLimits::default();
        let mut t = Table::default();
        for name in ["svc.b", "svc.a", "other", "svc", "svd"] {
            t.register(1, entry(name), &limits).unwrap();
        }
        let names: Vec<&str> = t.list("svc").map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["svc", "svc.a", "svc.b"]);
        assert_eq!(t.list("").count(), 5);
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        while let Some(e) = t.next_after("svc.", after.as_deref()) {
            seen.push(e.name.clone());
            after = Some(e.name.clone());
        }
        assert_eq!(seen, ["svc.a", "svc.b"]);
    }
}
