//! File descriptors: every connection, command (its pipes, its process,
//! its temporary files) and CouchDB request holds some, and a node out of
//! them can neither accept nor run. The soft limit is raised to the hard
//! one at start (systemd's default soft limit, 1,024, is what one busy
//! listener alone takes), and the listeners' connections are kept below
//! what the limit leaves for the rest.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept for everything but client connections: each command
/// running (`--concurrency` of them) takes about eight, CouchDB's pools,
/// the journal, the feed and the runtime the rest.
pub fn reserved(concurrency: usize) -> u64 {
    256 + 8 * concurrency as u64
}

/// Raises the soft limit of open files to the hard limit; returns the soft
/// limit in force afterwards (`None`: unlimited) and, when it could not be
/// raised, why.
pub fn raise_limit() -> (Option<u64>, Option<String>) {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return (limit.current, None);
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => (limit.maximum, None),
        Err(error) => (
            limit.current,
            Some(format!(
                "cannot raise the open files limit from {:?} to {:?}: {error}",
                limit.current, limit.maximum
            )),
        ),
    }
}

/// Connections each of `listeners` may hold: at most `wanted`, and all of
/// them together within what `limit` leaves once `reserved` (half the
/// limit at most) is set aside; at least one each.
pub fn connections_per_listener(
    wanted: usize,
    listeners: usize,
    limit: Option<u64>,
    reserved: u64,
) -> usize {
    let Some(limit) = limit else {
        return wanted;
    };
    let room = limit.saturating_sub(reserved.min(limit / 2)) / listeners.max(1) as u64;
    wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_what_the_limit_leaves() {
        // systemd's default soft limit, three listeners, eight commands.
        let reserve = reserved(8);
        assert_eq!(connections_per_listener(1024, 3, Some(1024), reserve), 234);
        assert!(3 * 234 + reserve <= 1024);
        assert_eq!(
            connections_per_listener(1024, 3, Some(524_288), reserve),
            1024
        );
        assert_eq!(connections_per_listener(1024, 2, None, reserve), 1024);
        assert_eq!(connections_per_listener(1024, 2, Some(256), reserve), 64);
        assert_eq!(connections_per_listener(1024, 3, Some(2), reserve), 1);
    }

    #[test]
    fn the_soft_limit_rises_to_the_hard_one() {
        let (limit, problem) = raise_limit();
        assert_eq!(problem, None);
        assert_eq!(limit, getrlimit(Resource::Nofile).maximum);
        assert_eq!(getrlimit(Resource::Nofile).current, limit);
    }
}
