/** The plan in words, for `cstp policy explain` and for administrators reading logs. */
import type { Certificate } from '../pki/certificate';
import type { Delivery, Plan, RecipientFinding, SigningIdentity, Transformation } from './plan';

export function explainPlan(plan: Plan): string {
  const lines = [
    `direction: ${plan.direction} (${plan.directionReason})`,
    `sender: ${plan.sender || '<> (null sender)'}`,
    ...findingLines(plan.findings),
  ];
  if (plan.temporaryFailure) {
    const t = plan.temporaryFailure;
    lines.push(`deferred: the whole message is refused for now with ${t.reply.code} ${t.reply.enhanced}`, `  ${t.reason}`);
  }
  plan.deliveries.forEach((d, i) => lines.push(...deliveryLines(d, i)));
  for (const r of plan.refused) {
    lines.push(`refused: ${r.recipient} with ${r.reply.code} ${r.reply.enhanced}`, `  ${r.reason}`);
    lines.push(r.notifySender ? '  a delivery status notification goes to the sender' : '  no notification: the sender is null');
  }
  for (const n of plan.notes) lines.push(`note: ${n}`);
  return lines.join('\n') + '\n';
}

function findingLines(findings: RecipientFinding[]): string[] {
  if (findings.length === 0) return [];
  const lines = ['recipients:'];
  for (const f of findings) {
    const flags = [f.local ? 'local' : '', f.requireEncryption ? 'encryption required' : ''].filter(Boolean);
    const what = f.local ? 'stays inside' : f.chosen ? `${f.chosen.via} certificate ${describe(f.chosen.cert)}` : 'no usable certificate';
    lines.push(`  ${f.address}: ${what}${flags.length ? ` [${flags.join(', ')}]` : ''}`);
    for (const s of f.skipped) lines.push(`    skipped ${s.via} certificate ${describe(s.cert)}: ${s.reason}`);
  }
  return lines;
}

function deliveryLines(d: Delivery, index: number): string[] {
  const route = d.route === 'original' ? 'original connection' : 'second connection (the relay if the destination refuses it)';
  const lines = [`delivery ${index + 1} via ${route}: ${d.recipients.join(', ')}`, ...transformationLines(d.transformation)];
  if (d.stripStatusHeaders) lines.push('  incoming security status headers are removed first');
  return lines;
}

function transformationLines(t: Transformation): string[] {
  switch (t.kind) {
    case 'encrypt': {
      const { cipher, rsaKeyTransport } = t.envelope.options;
      return [
        t.signer ? `  sign with ${signerText(t.signer)}, then` : '  not signed',
        `  encrypt with ${cipher} (RSA key transport ${rsaKeyTransport}) for ${t.envelope.certificates.length} certificate(s): ${t.envelope.reason}`,
        ...t.envelope.certificates.map((c) => `    ${describe(c)}`),
      ];
    }
    case 'detached-signature':
      return [`  detached signature (multipart/signed) with ${signerText(t.signer)}; not encrypted`];
    case 'unaltered':
      return [`  unaltered: ${t.reason}`];
    case 'unwrap':
      return [
        t.keys.length ? `  decrypt with ${t.keys.map((k) => `the ${k.holder} key ${describe(k.cert)}`).join(', ')}` : '  nothing to decrypt',
        '  verify every signature layer and add the results as headers',
      ];
  }
}

function signerText(s: SigningIdentity): string {
  return `${s.kind === 'user' ? 'the key of' : 'the gateway key of'} ${s.owner} ${describe(s.cert)}`;
}

function describe(cert: Certificate): string {
  return `"${cert.subject}" (SHA-256 ${cert.fingerprint.slice(0, 16)}, valid until ${cert.notAfter.toISOString().slice(0, 10)})`;
}
