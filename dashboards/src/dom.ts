// A few DOM helpers shared by the views (times are in time.ts).

type Child = Node | string | null | undefined | false;

/** `el("button", {type: "button"}, "Ack")`: an element with attributes and children. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

/** `f` once, `ms` after the first of a burst of calls (live events come in bursts). */
export function coalesce(f: () => void, ms = 250): () => void {
  let pending = 0;
  return () => {
    if (pending) return;
    pending = window.setTimeout(() => {
      pending = 0;
      f();
    }, ms);
  };
}

/** A modal dialog with a form; resolves with its values, or null when cancelled. */
export function ask(
  title: string,
  fields: { name: string; label: string; type?: string; value?: string; required?: boolean; options?: string[]; suggestions?: string[] }[],
  submit = "OK",
  note?: string,
): Promise<Record<string, string> | null> {
  return new Promise((resolve) => {
    const form = el("form", { method: "dialog" });
    form.append(el("h2", {}, title));
    if (note) form.append(el("p", { class: "note" }, note));
    for (const f of fields) {
      let input: HTMLInputElement | HTMLSelectElement;
      if (f.options) {
        input = el("select", { name: f.name });
        for (const o of f.options) input.append(el("option", { value: o }, o));
        if (f.value) input.value = f.value;
      } else {
        const list = f.suggestions?.length ? `ask-${f.name}-choices` : undefined;
        input = el("input", { name: f.name, type: f.type ?? "text", required: f.required ?? false, list, autocomplete: "off" });
        if (f.value !== undefined) input.value = f.value;
        if (list) form.append(el("datalist", { id: list }, ...f.suggestions!.map((s) => el("option", { value: s }))));
      }
      form.append(el("label", {}, f.label, input));
    }
    const ok = el("button", { type: "submit", value: "ok", class: "primary" }, submit);
    const cancel = el("button", { type: "button", value: "cancel" }, "Cancel");
    form.append(el("div", { class: "actions" }, cancel, ok));
    const dialog = el("dialog", {}, form);
    document.body.append(dialog);
    let done = false;
    const finish = (v: Record<string, string> | null) => {
      if (done) return;
      done = true;
      dialog.close();
      dialog.remove();
      resolve(v);
    };
    cancel.addEventListener("click", () => finish(null));
    dialog.addEventListener("cancel", () => finish(null));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const values: Record<string, string> = {};
      for (const [k, v] of new FormData(form).entries()) values[k] = String(v);
      finish(values);
    });
    dialog.showModal();
    (form.querySelector("input, select") as HTMLElement | null)?.focus();
  });
}

/** Arrow keys move between the rows of a list (rows are focusable). */
export function keyboardRows(container: HTMLElement, rowSelector: string): void {
  container.addEventListener("keydown", (e) => {
    const rows = [...container.querySelectorAll<HTMLElement>(rowSelector)];
    const i = rows.indexOf(document.activeElement as HTMLElement);
    if (i < 0) return;
    let next = -1;
    if (e.key === "ArrowDown" || e.key === "j") next = Math.min(rows.length - 1, i + 1);
    else if (e.key === "ArrowUp" || e.key === "k") next = Math.max(0, i - 1);
    else if (e.key === "Home") next = 0;
    else if (e.key === "End") next = rows.length - 1;
    if (next >= 0) {
      e.preventDefault();
      rows[next].focus();
    }
  });
}
