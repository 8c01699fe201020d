//! Cluster mode: groups and their offsets in `__consumer_offsets` (docs/cluster.md). The
//! coordinator follows the offsets partitions this broker leads, installs what it read of
//! them, prepares each commit, reset and delete as records to append, applies them once
//! appended, and says when a checkpoint is due.

use super::*;

impl GroupCoordinator {
    /// Switches to cluster mode: groups and offsets come from `__consumer_offsets` from now
    /// on (what the local column family held before the broker joined a cluster is dropped
    /// from memory, not from disk).
    pub fn replicate(&self) {
        if self.replicated.set(Replicated::default()).is_ok() {
            lock(&self.groups).clear();
        }
    }

    pub fn is_replicated(&self) -> bool {
        self.replicated.get().is_some()
    }

    /// Whether this broker coordinates the groups of offsets partition `p`.
    pub fn coordinating(&self, p: u32) -> Coordinating {
        match self
            .replicated
            .get()
            .and_then(|r| lock(&r.led).get(&p).copied())
        {
            Some(l) if l.ready => Coordinating::Ready,
            Some(_) => Coordinating::Loading,
            None => Coordinating::No,
        }
    }

    /// The offsets partitions led here now: forgets the groups of those no longer led and
    /// returns those newly led, each with its generation (to pass to [`Self::install`]).
    pub fn follow(&self, led_now: &BTreeSet<u32>) -> Vec<(u32, u64)> {
        let Some(r) = self.replicated.get() else {
            return Vec::new();
        };
        let mut led = lock(&r.led);
        let lost: Vec<u32> = led
            .keys()
            .filter(|p| !led_now.contains(*p))
            .copied()
            .collect();
        for p in &lost {
            led.remove(p);
        }
        let mut gained = Vec::new();
        for p in led_now {
            if !led.contains_key(p) {
                let generation = r.generations.fetch_add(1, Ordering::Relaxed) + 1;
                led.insert(
                    *p,
                    Led {
                        generation,
                        ready: false,
                        checkpointed: None,
                    },
                );
                gained.push((*p, generation));
            }
        }
        drop(led);
        if !lost.is_empty() {
            let mut groups = lock(&self.groups);
            groups.retain(|name, _| !lost.contains(&offsets::partition_of(name)));
            drop(groups);
            tracing::info!(partitions = ?lost, "no longer coordinating the groups of these offsets partitions");
            self.notify();
        }
        gained
    }

    /// The groups of offsets partition `p` as read from its log: installs them and starts
    /// serving them, unless leadership changed meanwhile (`generation`). Offsets of topics
    /// that no longer exist are left out.
    pub fn install(
        &self,
        p: u32,
        generation: u64,
        folded: offsets::OffsetsByGroup,
        topics: &TopicRegistry,
    ) -> bool {
        let Some(r) = self.replicated.get() else {
            return false;
        };
        let mut led = lock(&r.led);
        match led.get_mut(&p) {
            Some(l) if l.generation == generation => l.ready = true,
            _ => return false,
        }
        let mut groups = lock(&self.groups);
        let mut count = 0;
        for (name, mut offsets) in folded {
            offsets.retain(|(t, _), _| topics.get(t).is_ok());
            if offsets.is_empty() {
                continue;
            }
            let mut g = Group::new(name.clone());
            g.offsets = offsets;
            groups.insert(name, Arc::new(Mutex::new(g)));
            count += 1;
        }
        tracing::info!(
            partition = p,
            groups = count,
            "coordinating the groups of an offsets partition"
        );
        true
    }

    /// The lock a write to offsets partition `p` holds from before its checks until its
    /// offsets are applied.
    pub fn writer(&self, p: u32) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(lock(&self.writers).entry(p).or_default())
    }

    /// Led, loaded offsets partitions whose last checkpoint is older than `every` (or that
    /// have none), with their generation.
    pub fn checkpoints_due(&self, now: Instant, every: Duration) -> Vec<(u32, u64)> {
        let Some(r) = self.replicated.get() else {
            return Vec::new();
        };
        lock(&r.led)
            .iter()
            .filter(|(_, l)| {
                l.ready
                    && l.checkpointed
                        .is_none_or(|t| now.saturating_duration_since(t) >= every)
            })
            .map(|(p, l)| (*p, l.generation))
            .collect()
    }

    /// Notes a checkpoint of `p` written at `now` (if still led in `generation`).
    pub fn checkpointed(&self, p: u32, generation: u64, now: Instant) {
        if let Some(r) = self.replicated.get()
            && let Some(l) = lock(&r.led).get_mut(&p)
            && l.generation == generation
        {
            l.checkpointed = Some(now);
        }
    }

    /// Every live offset of the groups of offsets partition `p` (a checkpoint).
    pub fn live_offsets(&self, p: u32) -> Vec<offsets::OffsetRecord> {
        let groups: Vec<Arc<Mutex<Group>>> = lock(&self.groups)
            .iter()
            .filter(|(name, _)| offsets::partition_of(name) == p)
            .map(|(_, g)| Arc::clone(g))
            .collect();
        let mut out = Vec::new();
        for g in groups {
            let g = lock(&g);
            out.extend(g.offsets.iter().map(|(tp, c)| offsets::OffsetRecord {
                group: g.name.clone(),
                tp: tp.clone(),
                committed: Some(c.clone()),
            }));
        }
        out
    }

    /// Checks a commit as [`Self::commit`] does and returns what to write (cluster mode: the
    /// caller appends it to the group's offsets partition, then [`Self::apply`]s it).
    pub fn prepare_commit(
        &self,
        group: &str,
        member_id: &str,
        member_epoch: i64,
        offsets: Vec<CommitArgs>,
        topics: &TopicRegistry,
    ) -> Result<Vec<offsets::OffsetRecord>, BrokerError> {
        let g = self.group_for_commit(group, member_id)?;
        let g = lock(&g);
        let rows = self.commit_rows(&g, member_id, member_epoch, offsets, topics)?;
        Ok(rows
            .into_iter()
            .map(|(tp, _, c)| offsets::OffsetRecord {
                group: group.to_string(),
                tp,
                committed: Some(c),
            })
            .collect())
    }

    /// New offsets of `group` for partitions of `topic` (cluster mode's reset): checks the
    /// group has no live members and returns what to write.
    pub fn prepare_reset(
        &self,
        group: &str,
        topic: &str,
        to: &[(u32, u64)],
    ) -> Result<Vec<offsets::OffsetRecord>, BrokerError> {
        let g = self.get(group)?;
        let g = lock(&g);
        check_empty(&g)?;
        let now = now_ms();
        Ok(to
            .iter()
            .map(|&(p, offset)| offsets::OffsetRecord {
                group: group.to_string(),
                tp: (topic.to_string(), p),
                committed: Some(Committed {
                    offset,
                    metadata: String::new(),
                    commit_time: now,
                }),
            })
            .collect())
    }

    /// Tombstones for every offset of `group` (cluster mode's delete): checks it exists and
    /// has no live members.
    pub fn prepare_delete(&self, group: &str) -> Result<Vec<offsets::OffsetRecord>, BrokerError> {
        let g = self.get(group)?;
        let g = lock(&g);
        check_empty(&g)?;
        Ok(g.offsets
            .keys()
            .map(|tp| offsets::OffsetRecord {
                group: group.to_string(),
                tp: tp.clone(),
                committed: None,
            })
            .collect())
    }

    /// Applies written entries to the cache (cluster mode, after the append succeeded).
    pub fn apply(&self, entries: &[offsets::OffsetRecord]) {
        for e in entries {
            let g = match &e.committed {
                Some(_) => self.get_or_create(&e.group).ok(),
                None => self.get(&e.group).ok(),
            };
            let Some(g) = g else { continue };
            let mut g = lock(&g);
            match &e.committed {
                Some(c) => {
                    g.offsets.insert(e.tp.clone(), c.clone());
                }
                None => {
                    g.offsets.remove(&e.tp);
                }
            }
        }
        let names: BTreeSet<&str> = entries.iter().map(|e| e.group.as_str()).collect();
        for name in names {
            self.drop_if_idle(name);
        }
    }

    /// Forgets an empty group (cluster mode's delete of a group without offsets).
    pub fn forget_group(&self, group: &str) -> Result<(), BrokerError> {
        let mut map = lock(&self.groups);
        let g = map
            .get(group)
            .cloned()
            .ok_or_else(|| BrokerError::GroupNotFound(group.to_string()))?;
        check_empty(&lock(&g))?;
        map.remove(group);
        Ok(())
    }

    /// The topics a group reads or has offsets for.
    pub fn topics_of(&self, group: &str) -> Result<BTreeSet<String>, BrokerError> {
        let g = self.get(group)?;
        let g = lock(&g);
        let mut names = g.subscribed_topics();
        names.extend(g.offsets.keys().map(|(t, _)| t.clone()));
        Ok(names)
    }
}
