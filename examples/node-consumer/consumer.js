#!/usr/bin/env node
// Read one emotion-stream source from Redis through a consumer group and print every frame and event as one
// JSON record per line (the records of pipeline/core/schemas/*.schema.json).
//
//   node consumer.js --source talk [--redis redis://localhost:6379] [--group node-consumer] [--consumer NAME]
//                    [--prefix emotion] [--contract 1|2] [--count 100] [--block 1000] [--claim-idle 30000]
//                    [--idle-exit SECONDS]
//
// It stops when the source's status in `emotion:sources` is final (ended, failed, interrupted) and the group has
// nothing left to deliver or acknowledge, or after --idle-exit seconds without an entry.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { createClient } from 'redis';

const SCHEMAS = new URL('../../pipeline/core/schemas/', import.meta.url);
const FINAL_STATES = new Set(['ended', 'failed', 'interrupted']);

const USAGE = `usage: node consumer.js --source ID [--redis URL] [--group NAME] [--consumer NAME] [--prefix PREFIX]
                        [--contract 1|2] [--count N] [--block MS] [--claim-idle MS] [--idle-exit SECONDS]`;

// ---- The schemas: which fields a Redis entry holds as text -------------------------------------------------------

const loaded = new Map();

/** A schema file of pipeline/core/schemas/ (e.g. "frame.schema.json"), parsed once. */
function schemaFile(name) {
  if (!loaded.has(name)) loaded.set(name, JSON.parse(readFileSync(new URL(name, SCHEMAS), 'utf8')));
  return loaded.get(name);
}

/** `spec` with its `$ref` followed: "#/$defs/x" in `file`, or "other.schema.json#/$defs/x" in another file. */
function resolved(file, spec) {
  if (!spec.$ref) return spec;
  const [target, pointer = ''] = spec.$ref.split('#');
  let node = schemaFile(target || file);
  for (const part of pointer.split('/').filter(Boolean)) node = node[part];
  return resolved(target || file, node);
}

/** The fields of a record and whether each is typed as a string: the record's properties and those of every
 * `allOf` branch (the event types' own fields). */
function fieldTypes(file) {
  const schema = schemaFile(file);
  const properties = [schema.properties ?? {}, ...(schema.allOf ?? []).map((branch) => branch.then?.properties ?? {})];
  const strings = new Map();
  for (const props of properties) {
    for (const [name, spec] of Object.entries(props)) strings.set(name, resolved(file, spec).type === 'string');
  }
  return strings;
}

const RECORDS = {
  frame: { fields: fieldTypes('frame.schema.json') },
  event: { fields: fieldTypes('event.schema.json') },
};
const VERSIONS = new Set(resolved('frame.schema.json', { $ref: '#/$defs/version' }).enum);
const SOURCE_ID = resolved('frame.schema.json', { $ref: '#/$defs/sourceId' });

// ---- Decoding an entry by the contract's rule ---------------------------------------------------------------------

class Malformed extends Error {}

/** JSON text parsed; a number JSON cannot hold (1e999 -> Infinity) is refused, as the Python reader does. */
function parseJson(name, text) {
  try {
    return JSON.parse(text, (_, value) => {
      if (typeof value === 'number' && !Number.isFinite(value)) throw new Malformed(`${name} holds a number out of range`);
      return value;
    });
  } catch (error) {
    throw error instanceof Malformed ? error : new Malformed(`${name} is not valid JSON: ${text.slice(0, 40)}`);
  }
}

/**
 * The record of one stream entry: a field the schema types as a string is its text as it is, any other field the
 * schema knows is JSON text; a field the schema does not know (writers may add fields within a version) is kept,
 * as JSON where it parses and as text otherwise. `source` is the id in the key; an event's `event_id` is its entry id.
 */
function decode(kind, source, id, message) {
  const { fields } = RECORDS[kind];
  const record = kind === 'event' ? { event_id: id } : {};
  for (const [name, text] of Object.entries(message)) {
    if (fields.get(name) === true) record[name] = text;
    else if (fields.has(name)) record[name] = parseJson(name, text);
    else {
      try { record[name] = parseJson(name, text); } catch { record[name] = text; }
    }
  }
  if (!VERSIONS.has(record.v)) throw new Malformed(`v is ${JSON.stringify(record.v)}, this reader reads versions ${[...VERSIONS].join(' and ')}`);
  record.source = source;
  return record;
}

// ---- Options and keys ---------------------------------------------------------------------------------------------

const OPTIONS = {
  redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://localhost:6379' },
  source: { type: 'string' },
  group: { type: 'string', default: 'node-consumer' },
  consumer: { type: 'string', default: `${hostname()}-${process.pid}` },
  prefix: { type: 'string', default: 'emotion' },
  contract: { type: 'string', default: '1' },
  count: { type: 'string', default: '100' },
  block: { type: 'string', default: '1000' },
  'claim-idle': { type: 'string', default: '30000' },
  'idle-exit': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

function options() {
  let values;
  try {
    ({ values } = parseArgs({ options: OPTIONS }));
  } catch (error) {
    usage(error.message);
  }
  if (values.help) { console.log(USAGE); process.exit(0); }
  const number = (name, value) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0) usage(`--${name} must be a number >= 0, not ${value}`);
    return n;
  };
  const { pattern, not: { enum: refused } } = SOURCE_ID;
  if (!values.source || !new RegExp(pattern).test(values.source) || refused.includes(values.source)) {
    usage(`--source ID is required: a source id (${pattern}, not ${refused.join(' or ')})`);
  }
  if (!['1', '2'].includes(values.contract)) usage(`--contract is 1 or 2, not ${values.contract}`);
  return {
    ...values,
    contract: Number(values.contract),
    count: Math.max(1, number('count', values.count)),
    block: Math.max(1, number('block', values.block)),  // BLOCK 0 would wait forever
    claimIdle: number('claim-idle', values['claim-idle']),
    idleExit: values['idle-exit'] === undefined ? null : number('idle-exit', values['idle-exit']) * 1000,
  };
}

function usage(message) {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

/** The source's keys: contract 1 `emotion:frames:ID`; contract 2 (Redis Cluster) `emotion:{ID}:frames`. */
function keysOf({ prefix, contract, source }) {
  const key = (kind) => (contract === 2 ? `${prefix}:{${source}}:${kind}` : `${prefix}:${kind}:${source}`);
  return { frames: key('frames'), events: key('events'), dead: key('dead'), sources: `${prefix}:sources` };
}

// ---- The consumer -------------------------------------------------------------------------------------------------

async function main() {
  const opts = options();
  const keys = keysOf(opts);
  const kindOf = { [keys.frames]: 'frame', [keys.events]: 'event' };
  const streams = [keys.frames, keys.events];
  const client = createClient({ url: opts.redis });
  client.on('error', (error) => console.error(`redis: ${error.message}`));
  await client.connect();

  // The group reads each stream from its first entry; it may exist already (another consumer, a restart).
  for (const stream of streams) {
    try {
      await client.xGroupCreate(stream, opts.group, '0', { MKSTREAM: true });
    } catch (error) {
      if (!String(error.message).startsWith('BUSYGROUP')) throw error;
    }
  }

  /** Print one entry's record, then acknowledge it. A malformed entry is reported, copied to the source's dead
   * letters (as the Python reader does) and acknowledged too, so that it never blocks the group. */
  async function handle(stream, entry) {
    if (entry.message == null) {  // deleted (trimmed) while pending: nothing to read
      console.error(`entry ${entry.id} of ${stream} was deleted before it was read; acknowledged`);
    } else {
      try {
        process.stdout.write(`${JSON.stringify(decode(kindOf[stream], opts.source, entry.id, entry.message))}\n`);
      } catch (error) {
        if (!(error instanceof Malformed)) throw error;
        console.error(`skipped entry ${entry.id} of ${stream}: ${error.message}; acknowledged and moved to ${keys.dead}`);
        const copy = Object.fromEntries(Object.entries(entry.message).map(([name, value]) => [`entry:${name}`, value]));
        await client.xAdd(keys.dead, '*', { stream, id: entry.id, group: opts.group, consumer: opts.consumer,
          reason: error.message, ...copy });
      }
    }
    await client.xAck(stream, opts.group, entry.id);
  }

  /** XREADGROUP on both streams; `id` '0' re-reads this consumer's own pending entries (after a restart), '>' new ones. */
  async function read(id, block) {
    const reply = await client.xReadGroup(opts.group, opts.consumer, streams.map((key) => ({ key, id })),
      { COUNT: opts.count, ...(block === undefined ? {} : { BLOCK: block }) });
    let handled = 0;
    for (const { name, messages } of reply ?? []) {
      for (const entry of messages) { await handle(name, entry); handled += 1; }
    }
    return handled;
  }

  /** XAUTOCLAIM the entries other consumers were given but left unacknowledged longer than --claim-idle ms (a
   * consumer that died), then handle them as our own. */
  async function claim() {
    let handled = 0;
    for (const stream of streams) {
      let cursor = '0-0';
      do {
        const reply = await client.xAutoClaim(stream, opts.group, opts.consumer, opts.claimIdle, cursor, { COUNT: opts.count });
        const entries = reply.messages.filter(Boolean);
        if (entries.length) console.error(`claimed ${entries.length} entries of ${stream} idle over ${opts.claimIdle} ms`);
        for (const entry of entries) { await handle(stream, entry); handled += 1; }
        cursor = reply.nextId;
      } while (cursor !== '0-0');
    }
    return handled;
  }

  /** Whether the source's status is final: every entry it will ever have is written. */
  async function final() {
    const status = await client.hGet(keys.sources, opts.source);
    try {
      return status != null && FINAL_STATES.has(JSON.parse(status).state);
    } catch {
      return false;
    }
  }

  /** Entries of the group delivered to some consumer and not acknowledged yet. */
  async function pending() {
    let total = 0;
    for (const stream of streams) total += Number((await client.xPending(stream, opts.group)).pending);
    return total;
  }

  while (await read('0') > 0);  // our own entries left pending by an earlier run under this consumer name
  let lastEntry = Date.now();
  for (;;) {
    // Read the status first: when it is final before a read that finds nothing, nothing more will come.
    const done = await final();
    const handled = (await read('>', done ? undefined : opts.block)) + (await claim());
    if (handled > 0) { lastEntry = Date.now(); continue; }
    if (done && (await pending()) === 0) break;
    if (opts.idleExit !== null && Date.now() - lastEntry >= opts.idleExit) {
      console.error(`no entry for ${opts.idleExit / 1000} s: stopping`);
      break;
    }
    if (done) await new Promise((resolve) => setTimeout(resolve, Math.min(opts.block, opts.claimIdle) || 10));
  }
  client.destroy();
}

main().catch((error) => {
  console.error(`consumer: ${error.message}`);
  process.exit(1);
});
