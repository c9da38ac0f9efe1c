#!/usr/bin/env node
// Parse and validate an AsyncAPI document with @asyncapi/parser (installed from
// package-lock.json into schemas/node_modules by `npm ci --prefix schemas`).
// Usage: node schemas/validate-asyncapi.mjs [schemas/asyncapi.yaml]
// Exit 0 when the document parses without error-severity diagnostics, 1 when it
// has errors, 2 on a usage or internal failure. Warnings are printed but do not fail.
// Only local ($ref to files) references are resolved: http(s) references are refused
// so validation never depends on the network.
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';

const here = dirname(fileURLToPath(import.meta.url));
const file = resolve(process.argv[2] ?? resolve(here, 'asyncapi.yaml'));
if (!existsSync(file)) {
  console.error(`validate-asyncapi: no such file: ${file}`);
  process.exit(2);
}

const refuseNetwork = {
  order: 1,
  read(uri) {
    throw new Error(`network reference refused (offline validation): ${uri}`);
  },
};
const parser = new Parser({
  __unstable: {
    resolver: {
      resolvers: [
        { schema: 'http', ...refuseNetwork },
        { schema: 'https', ...refuseNetwork },
      ],
    },
  },
});

const names = { 0: 'error', 1: 'warning', 2: 'information', 3: 'hint' };
const where = (d) => {
  const p = (d.path ?? []).join('/');
  const r = d.range?.start ? `:${d.range.start.line + 1}:${d.range.start.character + 1}` : '';
  return `${d.source ?? file}${r}${p ? ` #/${p}` : ''}`;
};

try {
  const { document, diagnostics } = await fromFile(parser, file).parse();
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of diagnostics) {
    const sev = names[d.severity] ?? String(d.severity);
    const line = `${sev}: ${d.code}: ${d.message} (${where(d)})`;
    if (d.severity === DiagnosticSeverity.Error) console.error(line);
    else console.log(line);
  }
  if (errors.length > 0 || !document) {
    console.error(`validate-asyncapi: ${file}: ${errors.length} error(s)`);
    process.exit(1);
  }
  const channels = document.channels().length;
  const operations = document.operations().length;
  const messages = document.messages().length;
  console.log(
    `validate-asyncapi: ${file}: valid AsyncAPI ${document.version()} ` +
      `(${channels} channels, ${operations} operations, ${messages} messages, ` +
      `${diagnostics.length - errors.length} non-error diagnostic(s))`,
  );
} catch (err) {
  console.error(`validate-asyncapi: ${err?.stack ?? err}`);
  process.exit(2);
}
