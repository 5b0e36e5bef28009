//! The observed cache: a group's last listing of its instances, reused while the instance
//! plugin's events say nothing changed, as Kubernetes informers do (list, then watch, and list
//! again now and then).
//!
//! [`Watch`] is shared with the event follower ([`crate::follow`]): it records whether an
//! event stream of the instance plugin is live and whether an event about the group arrived
//! since the last listing. A pass lists again ([`must_list`]) when no stream is live (the
//! plugin has no events: poll, as always), when an event arrived, after a gap in the stream
//! (a new subscription marks the cache stale), after the pass before acted, when the instance
//! plugin changed, and at the latest every resync interval, in case an event was missed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use infrakit_spi::{Description, Instance, Result, Tags};

/// What the event follower knows: is a stream live, and did something happen.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    live: AtomicBool,
    stale: AtomicBool,
}

impl Watch {
    /// A stream of the instance plugin's events is live from now on. What happened before it
    /// was missed, so the cache is stale.
    pub fn subscribed(&self) {
        self.stale.store(true, Ordering::SeqCst);
        self.live.store(true, Ordering::SeqCst);
    }

    /// The stream ended (or could not start): passes list every time until it is back.
    pub fn lost(&self) {
        self.live.store(false, Ordering::SeqCst);
        self.stale.store(true, Ordering::SeqCst);
    }

    /// An event about the group arrived.
    pub fn changed(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// Whether a stream is live, and whether the cache went stale since the last call (which
    /// clears that, so an event arriving during the listing that follows marks it again).
    fn take(&self) -> (bool, bool) {
        let stale = self.stale.swap(false, Ordering::SeqCst);
        (self.live.load(Ordering::SeqCst), stale)
    }
}

/// Why a pass might list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reasons {
    /// An event stream is live.
    pub live: bool,
    /// An event arrived, or the stream had a gap.
    pub stale: bool,
    /// The pass before acted.
    pub acted: bool,
}

/// Whether a pass lists again, the last listing (of plugin `cached_plugin`) being `age` old.
pub(crate) fn must_list(
    cached: Option<(&str, Duration)>,
    plugin: &str,
    why: Reasons,
    resync: Duration,
) -> bool {
    match cached {
        None => true,
        Some((cached_plugin, age)) => {
            !why.live || why.stale || why.acted || cached_plugin != plugin || age >= resync
        }
    }
}

/// What of a listing can be trusted: instances without every tag asked for (another group's, or
/// anyone's, from a plugin that ignores the filter) and second listings of one ID are dropped,
/// so a confused plugin can never make the group count an instance twice (and scale in a healthy
/// one) or act on instances that are not its own. Says what was dropped, if anything.
pub(crate) fn sane(listed: Vec<Description>, tags: &Tags) -> (Vec<Description>, Option<String>) {
    let mut seen = std::collections::HashSet::with_capacity(listed.len());
    let (mut foreign, mut twice) = (0usize, 0usize);
    let mut kept = Vec::with_capacity(listed.len());
    for d in listed {
        if !d.tags.matches(tags) {
            foreign += 1;
        } else if !seen.insert(d.id.clone()) {
            twice += 1;
        } else {
            kept.push(d);
        }
    }
    let fault = match (foreign, twice) {
        (0, 0) => None,
        (f, 0) => Some(format!("{f} listed without the group's tags")),
        (0, t) => Some(format!("{t} listed twice")),
        (f, t) => Some(format!(
            "{f} listed without the group's tags, {t} listed twice"
        )),
    };
    (kept, fault)
}

/// The instances with `tags` that `instance` (plugin `plugin`) lists, made [`sane`], and what
/// the plugin did wrong, in words for the group's status (also logged).
pub(crate) async fn members(
    instance: &dyn Instance,
    plugin: &str,
    tags: &Tags,
    properties: bool,
) -> Result<(Vec<Description>, Option<String>)> {
    let listed = instance.describe_instances(tags, properties).await?;
    let (listed, fault) = sane(listed, tags);
    let fault = fault.map(|fault| {
        tracing::warn!(plugin, fault = %fault, "instance plugin listed instances it should not have; ignored");
        format!("instance plugin '{plugin}' misbehaves: {fault} (ignored)")
    });
    Ok((listed, fault))
}

/// The last listing.
#[derive(Debug)]
struct Cached {
    plugin: String,
    descriptions: Arc<Vec<Description>>,
    at: Instant,
}

/// One group's observed cache.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    cached: Option<Cached>,
    acted: bool,
}

impl Listing {
    /// The group's instances: the cached listing, or a new one from `instance` (plugin
    /// `plugin`) when [`must_list`] says so. A failed listing empties the cache.
    pub async fn list(
        &mut self,
        watch: &Watch,
        (instance, plugin): (&dyn Instance, &str),
        tags: &Tags,
        resync: Duration,
    ) -> Result<Arc<Vec<Description>>> {
        let (live, stale) = watch.take();
        let why = Reasons {
            live,
            stale,
            acted: std::mem::take(&mut self.acted),
        };
        let now = Instant::now();
        let cached = self
            .cached
            .as_ref()
            .map(|c| (c.plugin.as_str(), now.saturating_duration_since(c.at)));
        if let Some(c) = &self.cached {
            if !must_list(cached, plugin, why, resync) {
                return Ok(c.descriptions.clone());
            }
        }
        self.cached = None;
        let descriptions = Arc::new(members(instance, plugin, tags, true).await?.0);
        self.cached = Some(Cached {
            plugin: plugin.to_string(),
            descriptions: descriptions.clone(),
            at: now,
        });
        Ok(descriptions)
    }

    /// The pass acted: the next one lists again.
    pub fn acted(&mut self) {
        self.acted = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESYNC: Duration = Duration::from_secs(30);

    fn quiet() -> Reasons {
        Reasons {
            live: true,
            stale: false,
            acted: false,
        }
    }

    #[test]
    fn a_live_quiet_stream_reuses_the_listing_until_the_resync() {
        let fresh = Some(("file", Duration::from_secs(1)));
        assert!(!must_list(fresh, "file", quiet(), RESYNC));
        assert!(must_list(Some(("file", RESYNC)), "file", quiet(), RESYNC));
        assert!(must_list(None, "file", quiet(), RESYNC), "nothing cached");
    }

    #[test]
    fn any_sign_of_change_lists_again() {
        let fresh = Some(("file", Duration::ZERO));
        let no_stream = Reasons {
            live: false,
            ..quiet()
        };
        let event = Reasons {
            stale: true,
            ..quiet()
        };
        let acted = Reasons {
            acted: true,
            ..quiet()
        };
        assert!(must_list(fresh, "file", no_stream, RESYNC), "polling");
        assert!(must_list(fresh, "file", event, RESYNC));
        assert!(must_list(fresh, "file", acted, RESYNC));
        assert!(must_list(fresh, "process", quiet(), RESYNC), "new plugin");
    }

    #[test]
    fn the_watch_reports_staleness_once_and_remembers_a_live_stream() {
        let w = Watch::default();
        assert_eq!(w.take(), (false, false));
        w.subscribed();
        assert_eq!(
            w.take(),
            (true, true),
            "a new stream: what came before was missed"
        );
        assert_eq!(w.take(), (true, false));
        w.changed();
        assert_eq!(w.take(), (true, true));
        w.lost();
        assert_eq!(w.take(), (false, true));
    }

    fn described(id: &str, group: &str) -> Description {
        Description {
            id: id.into(),
            logical_id: None,
            tags: infrakit_spi::instance::Tags::from_iter([("infrakit.group", group)]),
            properties: None,
            created: None,
        }
    }

    #[test]
    fn foreign_and_twice_listed_instances_are_dropped_and_named() {
        let want = Tags::from_iter([("infrakit.group", "web")]);
        let listed = vec![
            described("a", "web"),
            described("b", "db"),
            described("a", "web"),
            described("c", "web"),
        ];
        let (kept, fault) = sane(listed, &want);
        let ids: Vec<&str> = kept.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(
            fault.as_deref(),
            Some("1 listed without the group's tags, 1 listed twice")
        );
        let (kept, fault) = sane(vec![described("a", "web")], &want);
        assert_eq!((kept.len(), fault), (1, None));
    }
}
