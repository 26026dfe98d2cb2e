//! The table's changes: inserting, removing, evicting, expiring, reloading.

use super::*;

impl<K: FlowKey> ConnTable<K> {
    /// Creates a connection for forward key `key` and, for NAT / full NAT,
    /// reply key `reply` (which must differ from every existing key). The
    /// state starts from the client packet's `flags`. Without a reply key the
    /// connection is input-only (DSR, tunnel).
    pub fn insert(
        &mut self,
        key: K,
        reply: Option<K>,
        new: NewConn,
        flags: TcpFlags,
        now: Time,
    ) -> Result<Inserted<K>, InsertError> {
        let h = self.hash_key(&key);
        let reply = reply.map(|r| (r, self.hash_key(&r)));
        self.insert_hashed(key, h, reply, new, flags, now)
    }

    /// [`ConnTable::insert`] with both keys already hashed by
    /// [`ConnTable::hash_key`] (or [`ConnTable::prefetch`]): the hashes a
    /// caller computed to prefetch the keys' buckets are not computed again.
    #[inline]
    pub fn insert_hashed(
        &mut self,
        key: K,
        h: u64,
        reply: Option<(K, u64)>,
        new: NewConn,
        flags: TcpFlags,
        now: Time,
    ) -> Result<Inserted<K>, InsertError> {
        self.insert_hashed_guess(key, h, reply, new, flags, now, false)
    }

    /// [`ConnTable::insert_hashed`], where `reply_guessed` says that the
    /// reply key is a guess (full NAT's likeliest free port, unchecked): a
    /// taken reply key is then [`InsertError::ReplyExists`] as ever, but
    /// not counted as a conflict (the caller picks another port), and the
    /// insert's own check of the reply key is the only one.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_hashed_guess(
        &mut self,
        key: K,
        h: u64,
        reply: Option<(K, u64)>,
        new: NewConn,
        flags: TcpFlags,
        now: Time,
        reply_guessed: bool,
    ) -> Result<Inserted<K>, InsertError> {
        debug_assert_eq!(h, self.hash_key(&key), "forward key hash");
        if let Some(existing) = self.resolve(h, &key) {
            self.stats.insert_exists += 1;
            return Err(InsertError::Exists(existing));
        }
        let rh = match reply {
            Some((r, rh)) => {
                if r == key {
                    self.stats.reply_conflicts += 1;
                    return Err(InsertError::ReplyIsForward);
                }
                if self.contains(&r, rh) {
                    self.stats.reply_conflicts += u64::from(!reply_guessed);
                    return Err(InsertError::ReplyExists);
                }
                rh
            }
            None => 0,
        };
        let need = 1 + usize::from(reply.is_some());
        let mut evicted = [None, None];
        let mut n_evicted = 0;
        while self.table.len() + need > self.capacity || self.free.is_empty() {
            let victim = match self.policy {
                FullPolicy::EvictOldest if n_evicted < 2 => self.evict_one(now),
                _ => None,
            };
            match victim {
                Some(c) => {
                    evicted[n_evicted] = Some(c);
                    n_evicted += 1;
                }
                None => {
                    self.stats.full_drops += 1;
                    return Err(InsertError::Full);
                }
            }
        }
        let Some(id) = self.free.pop() else {
            self.stats.full_drops += 1;
            return Err(InsertError::Full);
        };
        let generation = self.meta(id).generation.wrapping_add(1);
        let state = ConnState::initial(key.proto(), flags);
        let expires = now.as_nanos().saturating_add(self.timeouts[state as usize]);
        let conn = Conn::new_forward(expires, id, generation, &new, state, reply.is_none());
        let seed = self.seed;
        let hasher = |e: &Entry<K>| e.key.hash_with(seed);
        // Through the entry API: the vacant entry writes the new entry into
        // its bucket straight from registers (`insert_unique` would read it
        // back from the stack, stalling behind the stores still missing the
        // cache). Both keys were checked absent above.
        let bucket = match self.table.entry(h, |e| e.key == key, hasher) {
            hashbrown::hash_table::Entry::Vacant(v) => {
                let o = v.insert(Entry {
                    key,
                    x: key.stash(),
                    c: conn,
                });
                let b = o.bucket_index();
                let at: *const Entry<K> = o.get();
                self.learn_base(b, at);
                b
            }
            hashbrown::hash_table::Entry::Occupied(o) => {
                // Cannot happen (checked above, and eviction only removes).
                let b = o.bucket_index();
                self.free.push(id);
                self.stats.insert_exists += 1;
                return match self.handle_at(h, b) {
                    Some(existing) => Err(InsertError::Exists(existing)),
                    None => Err(InsertError::Full),
                };
            }
        };
        if let Some((r, rh)) = reply {
            let stash = K::SELF_CONTAINED_REPLIES.then(|| (key.src_port(), key.dst_port()));
            let rc = conn.reply_of(new.local.is_some(), stash, h);
            if let hashbrown::hash_table::Entry::Vacant(v) =
                self.table.entry(rh, |e| e.key == r, hasher)
            {
                v.insert(Entry {
                    key: r,
                    x: key.stash(),
                    c: rc,
                });
            }
        }
        self.set_meta(
            id,
            Meta {
                fwd_hash: h,
                rev_hash: rh,
                generation,
                has_reply: reply.is_some(),
                live: true,
            },
        );
        // Cannot fail: ids are below the wheel's capacity.
        let _ = self.wheel.arm(id, Time(expires));
        self.stats.inserts += 1;
        Ok(Inserted {
            handle: Handle {
                hash: h,
                bucket: bucket as u32,
                id,
                generation,
                reply: false,
            },
            state,
            evicted,
        })
    }

    /// Removes connection `id` (both entries), frees its id and timer.
    pub(super) fn remove_id(&mut self, id: u32, reason: CloseReason) -> Option<Closed<K>> {
        let m = *self.wheel.payload(id)?;
        if !m.live {
            return None;
        }
        let fwd = self
            .table
            .find_entry(m.fwd_hash, |e| e.is_conn(id, m.generation))
            .ok()?;
        let (entry, _) = fwd.remove();
        if m.has_reply
            && let Ok(r) = self
                .table
                .find_entry(m.rev_hash, |e| e.is_reply_of(id, m.generation))
        {
            r.remove();
        }
        self.wheel.disarm(id);
        self.set_meta(id, Meta { live: false, ..m });
        self.free.push(id);
        Some(Closed {
            key: entry.key,
            conn: entry.c,
            reason,
        })
    }

    /// Removes the connection `h` names.
    pub fn remove(&mut self, h: &Handle) -> Option<Closed<K>> {
        let b = self.locate(h)?;
        let id = self.table.get_bucket(b)?.c.id;
        let c = self.remove_id(id, CloseReason::Removed)?;
        self.stats.removed += 1;
        Some(c)
    }

    /// Frees room by removing the connection closest to expiry.
    pub(super) fn evict_one(&mut self, now: Time) -> Option<Closed<K>> {
        const ATTEMPTS: usize = 8;
        for attempt in 0..ATTEMPTS {
            let id = self.wheel.earliest()?;
            let m = self.meta(id);
            let expires = self
                .table
                .find(m.fwd_hash, |e| e.is_conn(id, m.generation))
                .map(|e| self.expiry_of(&e.c));
            let Some(expires) = expires.filter(|_| m.live) else {
                // A timer without a connection cannot exist; drop it defensively.
                self.wheel.disarm(id);
                continue;
            };
            if expires <= now.as_nanos() {
                let c = self.remove_id(id, CloseReason::Expired);
                self.stats.expired += 1;
                return c;
            }
            let armed = self.wheel.deadline(id).map_or(0, Time::as_nanos);
            if attempt + 1 < ATTEMPTS && expires > armed {
                // Refreshed since armed: not really the oldest. Re-arm and look again.
                let _ = self.wheel.arm(id, Time(expires));
                self.stats.lazy_rearms += 1;
                continue;
            }
            let c = self.remove_id(id, CloseReason::Evicted);
            self.stats.evictions += 1;
            return c;
        }
        None
    }

    /// Expires connections whose timeout has passed at `now`, doing at most
    /// `budget` timer operations; expired connections are appended to `out`
    /// (give it capacity `budget` to avoid allocating). Returns how many
    /// connections expired. Timers of refreshed connections are re-armed.
    pub fn expire(&mut self, now: Time, budget: usize, out: &mut Vec<Closed<K>>) -> usize {
        let mut expired = 0;
        for _ in 0..budget {
            let Some((id, _)) = self.wheel.pop_expired(now) else {
                break;
            };
            let m = self.meta(id);
            if !m.live {
                continue;
            }
            let Some(expires) = self
                .table
                .find(m.fwd_hash, |e| e.is_conn(id, m.generation))
                .map(|e| self.expiry_of(&e.c))
            else {
                continue;
            };
            if expires > now.as_nanos() {
                let _ = self.wheel.arm(id, Time(expires));
                self.stats.lazy_rearms += 1;
                continue;
            }
            if let Some(c) = self.remove_id(id, CloseReason::Expired) {
                self.stats.expired += 1;
                expired += 1;
                out.push(c);
            }
        }
        expired
    }

    /// A lower bound of the next expiry (for the runtime's scheduling).
    pub fn next_expiry(&self) -> Option<Time> {
        self.wheel.next_expiry()
    }

    /// Removes every connection, appending them to `out`. Returns the count.
    pub fn flush(&mut self, out: &mut Vec<Closed<K>>) -> usize {
        let ids: Vec<u32> = (0..self.capacity as u32)
            .filter(|&i| self.meta(i).live)
            .collect();
        let mut n = 0;
        for id in ids {
            if let Some(c) = self.remove_id(id, CloseReason::Flushed) {
                self.stats.removed += 1;
                out.push(c);
                n += 1;
            }
        }
        n
    }

    /// Adopts a new configuration snapshot: service, server and local-address
    /// indices are rewritten in place through `map`; connections whose
    /// service, server or local address disappeared are removed and appended
    /// to `out` (with their old indices). Allocates a scratch list: call at
    /// configuration change only. Returns how many were removed.
    pub fn apply_reload(&mut self, map: &ReloadMap, out: &mut Vec<Closed<K>>) -> usize {
        let mut doomed = Vec::new();
        // Reply entries hold a copy of the service and server: they are
        // mapped alike (a connection whose forward entry maps, maps). Their
        // local fields hold no local address (see `Entry`).
        for e in self.table.iter_mut() {
            let c = &mut e.c;
            let reply = c.is_reply();
            let mut doom = |c: &Conn| {
                if !reply {
                    doomed.push(c.id);
                }
            };
            let Some(m) = map.service(c.service) else {
                doom(c);
                continue;
            };
            let Some(Some(server)) = m.servers.get(usize::from(c.server)).copied() else {
                doom(c);
                continue;
            };
            if reply {
                c.service = m.new_index;
                c.server = server;
                continue;
            }
            let local = if c.local_addr == NO_LOCAL {
                Some(NO_LOCAL)
            } else {
                m.local_addrs.get(c.local_addr as usize).copied().flatten()
            };
            let Some(local) = local else {
                doom(c);
                continue;
            };
            c.service = m.new_index;
            c.server = server;
            c.local_addr = local;
        }
        let mut n = 0;
        for id in doomed {
            if let Some(c) = self.remove_id(id, CloseReason::Reload) {
                self.stats.reload_removed += 1;
                out.push(c);
                n += 1;
            }
        }
        n
    }

    /// Every connection with its forward key (for `tackctl conn show`),
    /// its expiry as [`ConnTable::expires`] gives it.
    pub fn iter(&self) -> impl Iterator<Item = (&K, Conn)> + '_ {
        self.table.iter().filter(|e| !e.c.is_reply()).map(|e| {
            let mut c = e.c;
            c.set_expiry_ns(self.expiry_of(&e.c));
            (&e.key, c)
        })
    }
}
