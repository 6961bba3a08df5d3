/**
 * Loading and validating cstp.ini. Every cstp plugin reads its settings from here; the cstp-config plugin loads it
 * first at startup, so a wrong value stops Haraka before it listens, naming the file, the key and the reason.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import Ajv, { type ErrorObject } from 'ajv';
import { IniSyntaxError, parseIni, type IniDocument } from './ini';
import { PolicyConfigError, resolvePolicyConfig } from '../policy/config';
import { CSTP_SCHEMA, FORMATS, policySettings, type CstpConfig } from './schema';

export type { CstpConfig } from './schema';

export class ConfigError extends Error {
  /** One line per problem, each "file: [section] key: reason (got "value")". */
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

const validate = compileValidator();

function compileValidator() {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, coerceTypes: true, strict: true });
  for (const [name, format] of Object.entries(FORMATS)) ajv.addFormat(name, { type: 'string', validate: format.validate });
  return ajv.compile(CSTP_SCHEMA);
}

/** The path of cstp.ini inside a Haraka instance directory. */
export function cstpIniPath(instanceDir: string): string {
  return join(instanceDir, 'config', 'cstp.ini');
}

/** Loads the instance's cstp.ini; a missing file means every default. Throws ConfigError. */
export function loadCstpConfig(instanceDir: string): CstpConfig {
  const file = cstpIniPath(instanceDir);
  return parseCstpConfig(existsSync(file) ? readFileSync(file, 'utf8') : '', displayName(file));
}

/** Parses and validates cstp.ini text; `fileName` is only used in error messages. */
export function parseCstpConfig(text: string, fileName: string): CstpConfig {
  let doc: IniDocument;
  try {
    doc = parseIni(text);
  } catch (err) {
    if (err instanceof IniSyntaxError) throw new ConfigError([`${fileName}:${err.line}: ${err.message.replace(/^line \d+: /, '')}`]);
    throw err;
  }
  const data = toData(doc);
  if (!validate(data)) throw new ConfigError((validate.errors ?? []).map((e) => describe(e, doc, fileName)));
  const config = data as unknown as CstpConfig;
  checkPolicy(config, fileName);
  return config;
}

/** src/policy checks its settings itself; the schema mirrors those rules, this keeps a drift from crashing later. */
function checkPolicy(config: CstpConfig, fileName: string): void {
  try {
    resolvePolicyConfig(policySettings(config));
  } catch (err) {
    if (!(err instanceof PolicyConfigError)) throw err;
    const key = err.key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    throw new ConfigError([`${fileName}: [policy] ${key}: ${err.message.replace(/^policy setting \w+: /, '')}`]);
  }
}

/** Resolves a path setting against the instance directory (absolute paths stay as they are). */
export function instancePath(instanceDir: string, setting: string): string {
  return isAbsolute(setting) ? setting : resolve(instanceDir, setting);
}

/** Section objects of strings; list settings are split on commas here so each item is validated on its own. */
function toData(doc: IniDocument): Record<string, Record<string, unknown>> {
  const data: Record<string, Record<string, unknown>> = {};
  for (const [section, entries] of doc) {
    data[section] = {};
    for (const [key, { value }] of entries) {
      data[section][key] = isListSetting(section, key) ? splitList(value) : value;
    }
  }
  return data;
}

function isListSetting(section: string, key: string): boolean {
  const sections = CSTP_SCHEMA.properties as Record<string, { properties: Record<string, { type: string }> }>;
  return sections[section]?.properties[key]?.type === 'array';
}

function splitList(value: string): string[] {
  return value.split(/[\s,]+/).filter((item) => item !== '');
}

function describe(error: ErrorObject, doc: IniDocument, fileName: string): string {
  const [section, key, item] = error.instancePath.split('/').slice(1);
  if (section === undefined) {
    const unknown = String(error.params.additionalProperty);
    if (unknown === 'main') return `${fileName}: settings must follow a [section] header`;
    return `${fileName}: [${unknown}]: unknown section (known: ${Object.keys(CSTP_SCHEMA.properties).join(', ')})`;
  }
  if (key === undefined) {
    return `${fileName}: [${section}] ${String(error.params.additionalProperty)}: unknown key`;
  }
  const raw = doc.get(section)?.get(key)?.value ?? '';
  const got = item === undefined ? raw : splitList(raw)[Number(item)];
  return `${fileName}: [${section}] ${key}: ${reason(error)} (got "${got}")`;
}

function reason(error: ErrorObject): string {
  switch (error.keyword) {
    case 'enum':
      return `must be one of ${(error.params.allowedValues as string[]).join(', ')}`;
    case 'type':
      return error.params.type === 'boolean' ? 'must be true or false' : `must be ${article(String(error.params.type))}`;
    case 'minimum':
    case 'maximum':
      return `must be ${error.params.comparison} ${error.params.limit}`;
    case 'format':
      return `must be ${FORMATS[String(error.params.format)].expected}`;
    case 'minLength':
      return 'must not be empty';
    default:
      return error.message ?? 'is invalid';
  }
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

/** Relative to the working directory when inside it (config/cstp.ini under npm start), else absolute. */
function displayName(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel.startsWith('..') || isAbsolute(rel) ? file : rel;
}
