//! Which node delivers which event, so that a receiver hears of each event
//! from one place: a reply (or a rerun) from the site that ran it, an
//! operation (and its refusal) from the site that accepted it, a merge or a
//! prune from the node that made it, and an operation's completion
//! from one site of the resource, the others standing by in turn
//! (CONSISTENCY.md, "Hooks").

use blake2::digest::consts::U8;
use blake2::{Blake2b, Digest};

use crate::node::feed::{Event, EventType};

/// What this node owes a hook for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Another node delivers it.
    None,
    /// Deliver it now.
    Now,
    /// Deliver it after this many grace periods, unless an earlier site in
    /// the completion's order has delivered it meanwhile.
    StandBy(u32),
}

/// What `site` owes for `event`.
pub fn duty(event: &Event, site: &str) -> Duty {
    let own = |by: Option<&str>| {
        if by == Some(site) {
            Duty::Now
        } else {
            Duty::None
        }
    };
    match event.kind {
        // What a site did, or what this node did itself.
        EventType::Reply | EventType::Rerun | EventType::Merge | EventType::Pruned => {
            own(event.site.as_deref())
        }
        // An operation accepted before sites were recorded: the first site
        // in the completion's order says it, with no stand-by.
        EventType::Operation | EventType::OperationRefused if event.site.is_none() => {
            match turn(site, &event.locations, &event.request) {
                Some(0) => Duty::Now,
                _ => Duty::None,
            }
        }
        EventType::Operation | EventType::OperationRefused => own(event.site.as_deref()),
        EventType::OperationComplete => match turn(site, &event.locations, &event.request) {
            Some(0) => Duty::Now,
            Some(turn) => Duty::StandBy(turn),
            None => Duty::None,
        },
    }
}

/// The place of `site` in the order in which the sites of a resource
/// deliver a request's completion: the sites sorted, then turned by a hash
/// of the request, so that completions spread over the sites. `None` for a
/// site that is not a location.
pub fn turn(site: &str, locations: &[String], request: &str) -> Option<u32> {
    let mut sites: Vec<&str> = locations.iter().map(String::as_str).collect();
    sites.sort_unstable();
    sites.dedup();
    let at = sites.iter().position(|s| *s == site)?;
    let digest = Blake2b::<U8>::digest(request.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest);
    let n = sites.len() as u64;
    let first = u64::from_le_bytes(bytes) % n;
    let turn = (at as u64 + n - first) % n;
    u32::try_from(turn).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("site{i}")).collect()
    }

    #[test]
    fn every_site_has_its_own_turn_and_the_first_varies() {
        let locations = sites(4);
        let mut firsts = std::collections::BTreeSet::new();
        for request in 0..64 {
            let request = format!("{request:032x}");
            let mut turns: Vec<u32> = locations
                .iter()
                .map(|s| turn(s, &locations, &request).unwrap())
                .collect();
            firsts.insert(turns.iter().position(|t| *t == 0));
            turns.sort_unstable();
            assert_eq!(turns, [0, 1, 2, 3], "{request}");
            // The order does not depend on how the locations are written.
            let mut reversed = locations.clone();
            reversed.reverse();
            assert_eq!(
                turn("site2", &reversed, &request),
                turn("site2", &locations, &request)
            );
        }
        assert_eq!(firsts.len(), 4, "completions spread over the sites");
        assert_eq!(turn("site9", &locations, "r"), None);
    }

    #[test]
    fn replies_and_operations_are_said_by_their_own_site() {
        let locations = sites(3);
        let mut reply = Event::new(EventType::Reply, "r", "q", &locations);
        reply.site = Some("site2".into());
        assert_eq!(duty(&reply, "site2"), Duty::Now);
        assert_eq!(duty(&reply, "site1"), Duty::None);
        let mut operation = Event::new(EventType::Operation, "r", "q", &locations);
        operation.site = Some("site3".into());
        assert_eq!(duty(&operation, "site3"), Duty::Now);
        assert_eq!(duty(&operation, "site1"), Duty::None);
        // Without its site, one site says it.
        operation.site = None;
        let saying = locations
            .iter()
            .filter(|s| duty(&operation, s) == Duty::Now)
            .count();
        assert_eq!(saying, 1);
    }

    #[test]
    fn a_completion_has_one_site_now_and_the_others_standing_by_in_turn() {
        let locations = sites(3);
        let complete = Event::new(EventType::OperationComplete, "r", "q", &locations);
        let mut duties: Vec<Duty> = locations.iter().map(|s| duty(&complete, s)).collect();
        duties.sort_by_key(|d| match d {
            Duty::Now => 0,
            Duty::StandBy(n) => *n,
            Duty::None => u32::MAX,
        });
        assert_eq!(duties, [Duty::Now, Duty::StandBy(1), Duty::StandBy(2)]);
        assert_eq!(duty(&complete, "elsewhere"), Duty::None);
    }
}
