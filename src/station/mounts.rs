//! The radio's output streams: each mount's ring, its listeners (admitted against its limits,
//! counted, listed and kicked), its metric series, and when it last got audio.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use super::Uptime;
use crate::config::MountConfig;
use crate::hls::sessions::Sessions;
use crate::metrics::{Metrics, MountMetrics};
use crate::ring::FrameRing;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is plain state updated in single statements; a panic elsewhere while
    // holding the lock cannot leave it half-written, so recovering it is safe.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connected listener, as `/admin/listclients` shows it.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: u64,
    pub addr: SocketAddr,
    pub user_agent: Arc<str>,
    pub connected: Instant,
    /// Raised by `/admin/killclient`; the stream ends at its next wake-up (at most one publish,
    /// 100 ms, later).
    pub kicked: Arc<AtomicBool>,
}

/// One output stream and its audience.
pub struct Mount {
    pub config: MountConfig,
    pub ring: Arc<FrameRing>,
    pub content_type: &'static str,
    /// Its series of the listener and encoder metrics.
    pub metrics: MountMetrics,
    listeners: AtomicUsize,
    peak: AtomicUsize,
    /// `Uptime` milliseconds at the last publish; 0 = never.
    last_publish_ms: AtomicU64,
    uptime: Uptime,
    pub started: SystemTime,
    clients: Mutex<Clients>,
    /// Its HLS listeners, when it is served as HLS too.
    hls_sessions: Option<Arc<Sessions>>,
}

/// The listeners of a mount, by id and counted by address.
#[derive(Default)]
struct Clients {
    by_id: BTreeMap<u64, Client>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Who listens to a mount, beyond the count ([`Mount::audience`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience {
    pub unique: usize,
    pub average_seconds: u64,
}

/// Why a listener was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The mount is at `max_listeners`.
    Full,
    /// The client's address is at `max_listeners_per_ip`.
    PerIp,
}

impl Mount {
    fn new(config: &MountConfig, metrics: &Metrics, started: SystemTime, uptime: Uptime) -> Mount {
        Mount {
            ring: FrameRing::new(config.queue.bytes(config.bytes_per_sec())),
            content_type: crate::encode::content_type(config.codec),
            metrics: metrics.for_mount(&config.path, config.codec.name(), config.hls),
            config: config.clone(),
            listeners: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            last_publish_ms: AtomicU64::new(0),
            uptime,
            started,
            clients: Mutex::new(Clients::default()),
            hls_sessions: config.hls.then(Arc::default),
        }
    }

    /// The HLS sessions of the mount, which the HLS side records; `None` without HLS.
    pub fn hls_sessions(&self) -> Option<&Arc<Sessions>> {
        self.hls_sessions.as_ref()
    }

    /// HLS sessions now (also set as the mount's `protocol="hls"` listener gauge).
    pub fn hls_listeners(&self) -> usize {
        let Some(sessions) = &self.hls_sessions else {
            return 0;
        };
        let n = sessions.count(Instant::now());
        if let Some(hls) = &self.metrics.hls {
            hls.listeners.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        n
    }

    /// Everyone listening: stream listeners and HLS sessions.
    pub fn all_listeners(&self) -> usize {
        self.listeners() + self.hls_listeners()
    }

    /// Called by the pipeline after each publish to the ring.
    pub fn mark_published(&self) {
        self.last_publish_ms
            .store(self.uptime.now_ms(), Ordering::Relaxed);
    }

    /// When audio was last published (`Uptime` milliseconds; 0 = never).
    pub(super) fn last_published_ms(&self) -> u64 {
        self.last_publish_ms.load(Ordering::Relaxed)
    }

    /// Listeners connected now, oldest first.
    pub fn clients(&self) -> Vec<Client> {
        lock(&self.clients).by_id.values().cloned().collect()
    }

    /// Distinct listener addresses, and the mean seconds the current listeners have been
    /// connected (Shoutcast's `UNIQUELISTENERS` and `AVERAGETIME`). One pass under the lock:
    /// microseconds at thousands of listeners, and asked for every few seconds at most.
    pub fn audience(&self) -> Audience {
        let clients = lock(&self.clients);
        let total: f64 = clients
            .by_id
            .values()
            .map(|c| c.connected.elapsed().as_secs_f64())
            .sum();
        Audience {
            unique: clients.per_ip.len(),
            average_seconds: if clients.by_id.is_empty() {
                0
            } else {
                (total / clients.by_id.len() as f64) as u64
            },
        }
    }

    /// Asks a listener's stream to end; false when there is no such listener.
    pub fn kick(&self, id: u64) -> bool {
        match lock(&self.clients).by_id.get(&id) {
            Some(c) => {
                c.kicked.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Current listener count.
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::Relaxed)
    }

    /// Highest listener count since start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Takes a listener slot, or says why not. The slot is given back on drop.
    pub fn admit(self: &Arc<Self>, client: Client) -> Result<ListenerSlot, Refusal> {
        let ip = client.addr.ip();
        // The per-address check and the count change under one lock, so two listeners from one
        // address arriving at once cannot both take the last place.
        let mut clients = lock(&self.clients);
        if let Some(limit) = self.config.max_listeners_per_ip
            && clients.per_ip.get(&ip).copied().unwrap_or(0) >= limit
        {
            return Err(Refusal::PerIp);
        }
        let max = self.config.max_listeners;
        let prev = self
            .listeners
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Refusal::Full)?;
        self.peak.fetch_max(prev + 1, Ordering::Relaxed);
        let id = client.id;
        *clients.per_ip.entry(ip).or_insert(0) += 1;
        clients.by_id.insert(id, client);
        Ok(ListenerSlot {
            mount: Arc::clone(self),
            id,
        })
    }
}

/// A counted, registered listener; dropping it frees the place.
pub struct ListenerSlot {
    mount: Arc<Mount>,
    id: u64,
}

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        let mut clients = lock(&self.mount.clients);
        if let Some(c) = clients.by_id.remove(&self.id) {
            let ip = c.addr.ip();
            if let Some(n) = clients.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    clients.per_ip.remove(&ip);
                }
            }
        }
        drop(clients);
        self.mount.listeners.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every mount of the radio, in config order (the fan-out thread's window index), and the ids
/// of their listeners.
pub struct Mounts {
    list: Vec<Arc<Mount>>,
    next_client_id: AtomicU64,
}

impl Mounts {
    pub fn new(
        configs: &[MountConfig],
        metrics: &Metrics,
        started: SystemTime,
        uptime: Uptime,
    ) -> Mounts {
        Mounts {
            list: configs
                .iter()
                .map(|c| Arc::new(Mount::new(c, metrics, started, uptime)))
                .collect(),
            next_client_id: AtomicU64::new(1),
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Arc<Mount>> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The mount at `index` (config order).
    pub fn get(&self, index: usize) -> Option<&Arc<Mount>> {
        self.list.get(index)
    }

    /// The index of the mount serving `path`.
    pub fn position(&self, path: &str) -> Option<usize> {
        self.list.iter().position(|m| m.config.path == path)
    }

    /// The mount serving `path`.
    pub fn find(&self, path: &str) -> Option<&Arc<Mount>> {
        self.position(path).and_then(|i| self.list.get(i))
    }

    /// A fresh listener id, unique for the life of the process.
    pub fn client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Listeners on every mount, HLS sessions included.
    pub fn total_listeners(&self) -> usize {
        self.list.iter().map(|m| m.all_listeners()).sum()
    }
}

impl<'a> IntoIterator for &'a Mounts {
    type Item = &'a Arc<Mount>;
    type IntoIter = std::slice::Iter<'a, Arc<Mount>>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secrets, parse};

    fn mounts(toml: &str) -> Mounts {
        let config = parse(toml, Secrets::default()).unwrap();
        Mounts::new(
            &config.mounts,
            &Metrics::new(),
            SystemTime::now(),
            Uptime::start(),
        )
    }

    fn client(mounts: &Mounts, addr: &str) -> Client {
        Client {
            id: mounts.client_id(),
            addr: addr.parse().unwrap(),
            user_agent: "test".into(),
            connected: Instant::now(),
            kicked: Arc::default(),
        }
    }

    #[test]
    fn admission_keeps_both_limits_and_a_dropped_slot_frees_its_place() {
        let mounts =
            mounts("[[mount]]\npath = \"/a.mp3\"\nmax_listeners = 3\nmax_listeners_per_ip = 2\n");
        let mount = mounts.find("/a.mp3").unwrap();
        let first = mount.admit(client(&mounts, "10.0.0.1:1000")).unwrap();
        let _second = mount.admit(client(&mounts, "10.0.0.1:1001")).unwrap();
        let refused = mount.admit(client(&mounts, "10.0.0.1:1002"));
        assert_eq!(refused.err(), Some(Refusal::PerIp));
        let _third = mount.admit(client(&mounts, "10.0.0.2:1000")).unwrap();
        let refused = mount.admit(client(&mounts, "10.0.0.3:1000"));
        assert_eq!(refused.err(), Some(Refusal::Full));
        assert_eq!((mount.listeners(), mounts.total_listeners()), (3, 3));
        drop(first);
        assert_eq!(mount.listeners(), 2);
        assert!(mount.admit(client(&mounts, "10.0.0.1:1003")).is_ok());
        assert_eq!(mount.peak(), 3);
    }

    #[test]
    fn a_kicked_client_is_flagged_and_an_unknown_id_is_not_found() {
        let mounts = mounts("[[mount]]\npath = \"/a.mp3\"\n");
        let mount = mounts.find("/a.mp3").unwrap();
        let c = client(&mounts, "[::1]:5000");
        let (id, kicked) = (c.id, Arc::clone(&c.kicked));
        let _slot = mount.admit(c).unwrap();
        assert_eq!(mount.clients().len(), 1);
        assert!(!mount.kick(id + 100));
        assert!(mount.kick(id));
        assert!(kicked.load(Ordering::Relaxed));
        assert_eq!(mounts.position("/a.mp3"), Some(0));
        assert!(mounts.find("/b.mp3").is_none());
    }
}
