// A small, safe Markdown renderer for model replies.
//
// Safety comes from the order: the whole text is HTML-escaped first, so
// nothing the model writes can open a tag or an attribute; only then are a
// few constructs turned into tags this file writes itself: paragraphs, line
// breaks, **bold**, *italic*, `code`, fenced code blocks, bullet and
// numbered lists, and [links](https://...) whose target is http or https
// (opened with rel="noopener noreferrer"). Anything else stays text.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHTML(s) {
  return String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// Placeholders for finished inline pieces (code spans, links), so later
// rules do not rewrite inside them. NUL never survives from the input: it is
// removed before anything else.
const HOLE = "\u0000";

function inline(text) {
  const held = [];
  const hold = (html) => `${HOLE}${held.push(html) - 1}${HOLE}`;
  let s = text;
  // `code`: taken as it is (already escaped).
  s = s.replace(/`([^`\n]+)`/g, (_, code) => hold(`<code>${code}</code>`));
  // [text](http(s)://target): the target is escaped text, so it cannot
  // leave the attribute; other schemes (javascript:, data:...) stay text.
  s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s()<>]+)\)/gi, (_, label, href) =>
    hold(`<a href="${href}" rel="noopener noreferrer" target="_blank">${emphasis(label)}</a>`));
  s = emphasis(s);
  // A link's label may hold a code span: restore until none is left.
  const hole = new RegExp(`${HOLE}(\\d+)${HOLE}`, "g");
  while (s.includes(HOLE)) s = s.replace(hole, (_, i) => held[Number(i)]);
  return s;
}

function emphasis(s) {
  return s
    .replace(/\*\*(?=\S)([^*\n]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[\s(])__(?=\S)([^_\n]*?\S)__(?=$|[\s).,;:!?])/g, "$1<strong>$2</strong>")
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![*\w])/g, "$1<em>$2</em>")
    .replace(/(^|[\s(])_(?=[^\s_])([^_\n]*?[^\s_])_(?=$|[\s).,;:!?])/g, "$1<em>$2</em>");
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)\s*$/;
const BULLET = /^ {0,3}[-*+]\s+(.*)$/;
const NUMBERED = /^ {0,3}(\d{1,9})[.)]\s+(.*)$/;

// renderMarkdown returns HTML for text. An unclosed code fence runs to the
// end, so a reply still streaming renders as it will when done.
export function renderMarkdown(text) {
  const lines = escapeHTML(String(text).replaceAll(HOLE, "")).split(/\r?\n/);
  const out = [];
  let para = [];
  const flush = () => {
    if (para.length) out.push(`<p>${para.map(inline).join("<br>")}</p>`);
    para = [];
  };
  for (let i = 0; i < lines.length; ) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      flush();
      const body = [];
      for (i++; i < lines.length; i++) {
        const close = FENCE.exec(lines[i]);
        if (close && close[1][0] === fence[1][0] && close[1].length >= fence[1].length && !close[2]) break;
        body.push(lines[i]);
      }
      i++; // the closing fence
      const lang = fence[2] ? ` class="language-${fence[2]}"` : "";
      out.push(`<pre><code${lang}>${body.join("\n")}</code></pre>`);
      continue;
    }
    const list = BULLET.test(line) ? BULLET : NUMBERED.test(line) ? NUMBERED : null;
    if (list) {
      flush();
      const items = [];
      const first = list === NUMBERED ? Number(NUMBERED.exec(line)[1]) : 1;
      for (; i < lines.length && list.test(lines[i]); i++) {
        const m = list.exec(lines[i]);
        items.push(`<li>${inline(m[m.length - 1])}</li>`);
      }
      const tag = list === NUMBERED ? "ol" : "ul";
      const start = tag === "ol" && first !== 1 ? ` start="${first}"` : "";
      out.push(`<${tag}${start}>${items.join("")}</${tag}>`);
      continue;
    }
    if (line.trim() === "") flush();
    else para.push(line);
    i++;
  }
  flush();
  return out.join("");
}
