// Money: the API sends decimal strings ("0.00066"); they are shown as given. Where the
// explorer must add amounts up (a live run's running cost, a chart bucket), it adds them
// as integers of 10^-18 USD (BigInt), never as floats, and prints the exact decimal.

const SCALE = 18;
const UNIT = 10n ** BigInt(SCALE);

/** "0.00066" -> 660000000000000n (units of 1e-18 USD). Bad input is 0n. */
export function parse(text) {
  const m = /^(-)?(\d*)(?:\.(\d*))?$/.exec(String(text ?? "").trim());
  if (!m || (m[2] === "" && (m[3] === undefined || m[3] === ""))) return 0n;
  const whole = BigInt(m[2] || "0");
  const frac = BigInt(((m[3] || "") + "0".repeat(SCALE)).slice(0, SCALE));
  const v = whole * UNIT + frac;
  return m[1] ? -v : v;
}

/** 660000000000000n -> "0.00066" (no exponent, no trailing zeros). */
export function format(units) {
  const neg = units < 0n;
  const v = neg ? -units : units;
  const whole = v / UNIT;
  let frac = (v % UNIT).toString().padStart(SCALE, "0").replace(/0+$/, "");
  return (neg ? "-" : "") + whole.toString() + (frac ? "." + frac : "");
}

export function add(...texts) {
  return format(texts.reduce((acc, t) => acc + parse(t), 0n));
}

export function isZero(text) {
  return parse(text) === 0n;
}

export function compare(a, b) {
  const x = parse(a);
  const y = parse(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** a / b as a number in [0, 1] for drawing only (bar widths), never for showing money. */
export function ratio(a, b) {
  const y = parse(b);
  if (y <= 0n) return 0;
  return Number((parse(a) * 1000000n) / y) / 1000000;
}

/** "$0.00066", as the API gave it. */
export function usd(text) {
  const t = String(text ?? "0");
  return t.startsWith("-") ? `−$${t.slice(1)}` : `$${t}`;
}
