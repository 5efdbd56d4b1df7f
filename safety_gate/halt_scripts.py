"""The halt record's Lua scripts (safety_gate/halt.py runs them): each change of the record, its version counter, its
approvals, its announcement and its audit entry happens in one atomic step in Redis. A damaged record is read by the
same rules as `HaltRecord.from_redis` (`state_of`)."""

__all__ = ["NEXT_VERSION", "INIT", "TRIP", "APPROVE"]

# Shared by every script that gives a new version.
NEXT_VERSION = """
-- A stored version: digits only, at most 15 of them (below 2^53), else nil (damaged).
local function as_version(v)
  if type(v) ~= 'string' or #v > 15 or not string.match(v, '^%d+$') then return nil end
  return tonumber(v)
end
local function is_hash(key) return redis.call('TYPE', key)['ok'] == 'hash' end
-- The record's version, nil when the key is not a hash or its version is damaged.
local function record_version(halt)
  if not is_hash(halt) then return nil end
  return as_version(redis.call('HGET', halt, 'version'))
end
local function counter(seq)
  if redis.call('TYPE', seq)['ok'] ~= 'string' then return nil end
  return as_version(redis.call('GET', seq))
end
-- The record's state as every reader takes it: DAMAGED (read as HALTED) when any field breaks the rules that
-- HaltRecord.from_redis checks in Python (the two must agree, or status and clear would disagree).
local function state_of(halt)
  if redis.call('EXISTS', halt) == 0 then return 'MISSING' end
  if not is_hash(halt) or not record_version(halt) then return 'DAMAGED' end
  local f = redis.call('HMGET', halt, 'state', 'reason', 'incident_id', 'since', 'by', 'metrics')
  local s = f[1]
  if s ~= 'RUNNING' and s ~= 'HALTED' then return 'DAMAGED' end
  if f[2] and #f[2] > 1000 then return 'DAMAGED' end
  if (f[3] and #f[3] > 128) or (f[5] and #f[5] > 128) then return 'DAMAGED' end
  if f[4] and f[4] ~= '' and (#f[4] > 40 or not string.match(f[4], '^%d%d%d%d%-%d%d%-%d%dT[%d:%.%+%-Z]+$')) then
    return 'DAMAGED'
  end
  if f[6] and f[6] ~= '' then
    if #f[6] > 16384 then return 'DAMAGED' end
    local ok, m = pcall(cjson.decode, f[6])
    if not ok or type(m) ~= 'table' then return 'DAMAGED' end
  end
  return s
end
-- The next halt version: above both the record's and the counter's, so versions never repeat, even after the
-- record was deleted (an approval given for an old version can then never lift a new halt). The clear, which
-- may touch approvals (the review app and the admin; the evaluator's trip may not), also drops any approval left
-- under the new version (possible only after a damaged counter went back).
local function next_version(halt, seq, approvals)
  local v = math.max(record_version(halt) or 0, counter(seq) or 0) + 1
  redis.call('DEL', seq)
  redis.call('SET', seq, v)
  if approvals then redis.call('DEL', approvals .. v) end
  return v
end
"""

# KEYS: halt, audit, version counter | ARGV: by, reason, now, origin, channel, maxlen
# A deployment that has had a halt record (the counter exists) is never initialised again by one person:
# deleting the record and running init was a one-person clear. A missing record reads as HALTED; lifting it
# takes the two-person clear.
INIT = NEXT_VERSION + """

if redis.call('EXISTS', KEYS[1]) == 1 then
  if state_of(KEYS[1]) == 'DAMAGED' then return {-2, counter(KEYS[3]) or 0} end
  return {0, record_version(KEYS[1])}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.init_refused', 'who', ARGV[1],
             'reason', ARGV[2], 'at', ARGV[3], 'origin', ARGV[4])
  return {-1, counter(KEYS[3]) or 0}
end
local version = next_version(KEYS[1], KEYS[3], nil)
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'reason', ARGV[2], 'incident_id', '', 'since', ARGV[3],
           'by', ARGV[1], 'metrics', '{}', 'version', version)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.init', 'who', ARGV[1],
           'reason', ARGV[2], 'at', ARGV[3], 'origin', ARGV[4], 'version', version, 'state', 'RUNNING')
redis.call('PUBLISH', ARGV[5], cjson.encode({state='RUNNING', version=version, reason=ARGV[2], by=ARGV[1],
           since=ARGV[3], incident_id='', metrics='{}'}))
return {1, version}
"""

# KEYS: halt, audit, version counter | ARGV: by, reason, now, origin, channel, maxlen, incident_id, metrics_json.
# A damaged record is replaced by a fresh HALTED one (a trip never fails on it).
TRIP = NEXT_VERSION + """

local state = state_of(KEYS[1])
local version = record_version(KEYS[1]) or 0
if state == 'HALTED' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.trip_repeat', 'who', ARGV[1],
             'reason', ARGV[2], 'at', ARGV[3], 'origin', ARGV[4], 'version', version, 'state', 'HALTED',
             'incident_id', ARGV[7])
  return {0, version}
end
version = next_version(KEYS[1], KEYS[3], nil)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'HALTED', 'reason', ARGV[2], 'incident_id', ARGV[7], 'since', ARGV[3],
           'by', ARGV[1], 'metrics', ARGV[8], 'version', version)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.trip', 'who', ARGV[1],
           'reason', ARGV[2], 'at', ARGV[3], 'origin', ARGV[4], 'version', version, 'state', 'HALTED',
           'incident_id', ARGV[7], 'repaired', state == 'DAMAGED' and '1' or '0')
redis.call('PUBLISH', ARGV[5], cjson.encode({state='HALTED', version=version, reason=ARGV[2], by=ARGV[1],
           since=ARGV[3], incident_id=ARGV[7], metrics=ARGV[8]}))
return {1, version}
"""

# KEYS: halt, audit, approvals-prefix, version counter | ARGV: by, reason, now, origin, channel, maxlen, role,
# version. A missing or damaged record is HALTED (as the gate reads it) at the counter's version; the clear that
# lifts it writes a fresh record (the repair, audited as such).
APPROVE = NEXT_VERSION + """

local state = state_of(KEYS[1])
local version = record_version(KEYS[1])
if state == 'MISSING' or state == 'DAMAGED' then version = counter(KEYS[4]) or 0 end
if state == 'RUNNING' then return {-1, version} end
if tonumber(ARGV[8]) ~= version then return {-2, version} end
local akey = KEYS[3] .. version
local other_role = 'clinical_lead'
if ARGV[7] == 'clinical_lead' then other_role = 'oncall_engineer' end
local other = redis.call('HGET', akey, other_role)
if other and cjson.decode(other)['by'] == ARGV[1] then return {-3, version} end
-- The other approval counts only while its account still holds that role and is enabled (issue 35: an approval
-- given before its account was disabled completed a clear). Checked here, in the same step as the clear.
if other and ARGV[10] == '1' then
  local who = cjson.decode(other)['by']
  local account = ARGV[11] .. who
  if redis.call('TYPE', account)['ok'] ~= 'hash' or redis.call('HGET', account, 'role') ~= other_role
     or redis.call('HGET', account, 'disabled') == '1' then
    redis.call('HDEL', akey, other_role)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.approval_void', 'who', who,
               'role', other_role, 'reason', 'account disabled or no longer ' .. other_role, 'at', ARGV[3],
               'origin', ARGV[4], 'version', version)
    other = nil
  end
end
redis.call('HSET', akey, ARGV[7], cjson.encode({by=ARGV[1], reason=ARGV[2], at=ARGV[3], origin=ARGV[4]}))
redis.call('EXPIRE', akey, ARGV[9])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.approve_clear', 'who', ARGV[1],
           'role', ARGV[7], 'reason', ARGV[2], 'at', ARGV[3], 'origin', ARGV[4], 'version', version)
if not other then return {0, version} end
local o = cjson.decode(other)
version = next_version(KEYS[1], KEYS[4], KEYS[3])
local reason = other_role .. ' ' .. o['by'] .. ': ' .. o['reason'] .. ' | '
               .. ARGV[7] .. ' ' .. ARGV[1] .. ': ' .. ARGV[2]
local by = o['by'] .. '+' .. ARGV[1]
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'reason', reason, 'incident_id', '', 'since', ARGV[3],
           'by', by, 'metrics', '{}', 'version', version)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.clear', 'who', by,
           'reason', reason, 'at', ARGV[3], 'origin', ARGV[4], 'version', version, 'state', 'RUNNING',
           'repaired', state == 'DAMAGED' and '1' or '0')
redis.call('PUBLISH', ARGV[5], cjson.encode({state='RUNNING', version=version, reason=reason, by=by,
           since=ARGV[3], incident_id='', metrics='{}'}))
return {1, version}
"""
