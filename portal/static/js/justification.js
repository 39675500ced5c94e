// A justification counted as the gateway counts it (gateway/justification.py): invisible
// characters removed, NFKC, whitespace collapsed; letters are Unicode letters, words are
// whitespace-separated tokens holding a letter. The rule itself comes from the policy data
// (/portal/config.json); the policy still decides.

// Whitespace stays (as a space); every other invisible character goes.
const INVISIBLE = /(?![\s])[\p{Cf}\p{Cc}\u034F\u115F\u1160\u17B4\u17B5\u180B-\u180F\u3164\uFE00-\uFE0F\u2065\uFFA0\uFFF0-\uFFF8\u{E0000}-\u{E0FFF}]/gu;

export function count(text) {
  const visible = text.replace(INVISIBLE, "").normalize("NFKC").replace(INVISIBLE, "");
  const tokens = visible.split(/\s+/u).filter(Boolean);
  return {
    letters: (visible.match(/\p{L}/gu) || []).length,
    words: tokens.filter((t) => /\p{L}/u.test(t)).length,
  };
}

export function meets(rule, text) {
  if (!rule || !rule.justificationRequired) return true;
  const { letters, words } = count(text);
  return words >= rule.minWords && letters >= rule.minLetters;
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

// The rule in words, and how far what has been written meets it.
export function ruleWords(rule, text) {
  if (!rule || !rule.justificationRequired) {
    return "No justification is needed for this purpose. Anything you write is kept in the audit record.";
  }
  const { letters, words } = count(text);
  const need = `A justification is needed: at least ${plural(rule.minWords, "word")} and ` +
    `${plural(rule.minLetters, "letter")}.`;
  if (words >= rule.minWords && letters >= rule.minLetters) return `${need} Yours meets it.`;
  return `${need} So far: ${plural(words, "word")}, ${plural(letters, "letter")}.`;
}
