// Building elements from data: text always goes in as text, never as HTML.

export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, ...children);
  return element;
}

// Appends children, flattening nested lists and leaving out null, undefined and false.
export function append(parent, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : String(child));
  }
}

export function clear(element) {
  element.replaceChildren();
}

// Text from outside the page (an agency's record, an account's name), isolated from the words
// around it: a right-to-left override it leaves open - "Jo \u202eHart" - reorders only itself,
// never the phone number, provenance or account shown after it.
export function data(text) {
  return text === null || text === undefined || text === "" ? null : el("bdi", {}, text);
}

// Plain words followed by the code they stand for, small: "Social worker (social_worker)".
export function coded(words, code) {
  return [words, " ", el("span", { class: "code" }, `(${code})`)];
}
