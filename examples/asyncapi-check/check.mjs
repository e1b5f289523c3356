#!/usr/bin/env node
// Check an AsyncAPI document with the official parser (@asyncapi/parser: the spec's JSON Schema, its references
// and its rules), then check every message payload written as JSON Schema 2020-12 against that draft's meta-schema
// (the parser has no 2020-12 schema parser, so it would take those payloads unchecked).
//
//   node check.mjs [FILE]    default: ../../pipeline/core/schemas/asyncapi.yaml
//
// External `$ref`s (e.g. "./frame.schema.json") resolve relative to the document's folder. Exit status: 0 when
// the parser reports no error or warning and every payload is valid; 1 otherwise (each problem printed); 2 when
// the file cannot be read.

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { DiagnosticSeverity, Parser, fromFile } from '@asyncapi/parser';
import Ajv2020 from 'ajv/dist/2020.js';

const file = resolve(process.argv[2] ?? new URL('../../pipeline/core/schemas/asyncapi.yaml', import.meta.url).pathname);
if (!existsSync(file)) {
  console.error(`${file}: no such file`);
  process.exit(2);
}

const SEVERITY = Object.fromEntries(Object.entries(DiagnosticSeverity).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v, k.toLowerCase()]));
const DRAFT_2020_12 = /^application\/schema\+(json|yaml);version=draft-2020-12$/;

// fromFile passes the file's path as the document's source, so relative references resolve beside it.
const { document, diagnostics } = await fromFile(new Parser(), file).parse();

let problems = 0;
for (const diagnostic of diagnostics) {
  const failing = diagnostic.severity <= DiagnosticSeverity.Warning;
  problems += failing ? 1 : 0;
  const { line, character } = diagnostic.range?.start ?? { line: 0, character: 0 };
  const where = diagnostic.path?.length ? ` at ${diagnostic.path.join('/')}` : '';
  console.log(`${file}:${line + 1}:${character + 1}: ${SEVERITY[diagnostic.severity]} ${diagnostic.code}: ${diagnostic.message}${where}`);
}

if (document) {
  // Each distinct message's payload once; a fresh validator each, since two payloads may embed the same $id.
  for (const message of document.allMessages().all()) {
    const payload = message.json().payload;
    if (!payload || !DRAFT_2020_12.test(payload.schemaFormat ?? '')) continue;
    const ajv = new Ajv2020({ strict: false });
    let errors = ajv.validateSchema(payload.schema) ? [] : ajv.errors.map((e) => `${e.instancePath || '/'} ${e.message}`);
    if (!errors.length) {
      try { ajv.compile(payload.schema); } catch (error) { errors = [error.message]; }
    }
    for (const error of errors) {
      problems += 1;
      console.log(`${file}: error payload-schema: message ${message.id()}: not a valid JSON Schema 2020-12: ${error}`);
    }
  }
}

if (!document || problems) {
  console.log(`${file}: ${problems || 'unparsable, 1'} problem(s)`);
  process.exit(1);
}
const count = (items) => items.all().length;
console.log(`${file}: valid AsyncAPI ${document.version()} (${count(document.channels())} channels, ` +
            `${count(document.operations())} operations, ${count(document.allMessages())} messages)`);
