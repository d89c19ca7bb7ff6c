// "Planned works by e-mail": the form residents subscribe with, shown when the hub sends
// e-mail (the feed names where to post). The hub mails a confirmation and nothing else
// until its link is followed, and answers the same whatever the address's state, so the
// page only repeats what the hub says.

import { el } from "../dom";

export class SubscribeForm {
  readonly element = el("section", { class: "subscribe", "aria-labelledby": "subscribe-title", hidden: true });
  private readonly form = el("form", { novalidate: true });
  private readonly email = el("input", { type: "email", id: "subscribe-email", name: "email", required: true, autocomplete: "email", maxlength: 254 });
  private readonly district = el("select", { id: "subscribe-district", name: "district" });
  private readonly said = el("p", { class: "said", role: "status" });
  private path: string | null = null;
  private districts = "";

  constructor() {
    this.form.append(
      el("label", { for: "subscribe-email" }, "Your e-mail address"),
      this.email,
      el("label", { for: "subscribe-district" }, "Where"),
      this.district,
      el("button", { type: "submit" }, "Subscribe"),
    );
    this.element.append(
      el("h2", { id: "subscribe-title" }, "Planned works by e-mail"),
      el("p", { class: "lede" }, "Be told of the works planned where you live. You confirm from the first mail, and every mail has a link to stop them."),
      this.form,
      this.said,
    );
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.send();
    });
  }

  /** Shows the form for `path` (null: the hub sends no e-mail) and the city's districts. */
  show(path: string | null, districts: string[]): void {
    this.path = path;
    this.element.hidden = path === null;
    const key = districts.join("\n");
    if (key === this.districts) return;
    this.districts = key;
    const chosen = this.district.value;
    this.district.replaceChildren(el("option", { value: "" }, "The whole city"), ...districts.map((d) => el("option", { value: d }, d)));
    this.district.value = districts.includes(chosen) ? chosen : "";
  }

  private async send(): Promise<void> {
    if (!this.path) return;
    const email = this.email.value.trim();
    if (!this.email.checkValidity() || !email) {
      this.say("Write an e-mail address, like name@example.org.", true);
      return;
    }
    const body: { email: string; district?: string } = { email };
    if (this.district.value) body.district = this.district.value;
    try {
      const res = await fetch(this.path, { method: "POST", credentials: "omit", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const answer = (await res.json().catch(() => ({}))) as { message?: string; error?: string };
      if (res.ok) {
        this.say(answer.message ?? "Thank you: look for the confirmation in your mailbox.", false);
        this.form.reset();
      } else if (res.status === 429) {
        this.say("The city's server is busy: please try again in a minute.", true);
      } else {
        this.say(answer.error ? `Not sent: ${answer.error}.` : `Not sent: the city's server answered ${res.status}.`, true);
      }
    } catch {
      this.say("The city's server could not be reached: please try again.", true);
    }
  }

  private say(text: string, problem: boolean): void {
    this.said.textContent = text;
    this.said.classList.toggle("problem", problem);
  }
}
