"use strict";
// Stand-in for the unpublished @hazeljs/prompts (see ../README.md): the names @hazeljs/agent imports.
class PromptTemplate {
  constructor(template, metadata = {}) {
    this.template = template;
    this.metadata = metadata;
  }
  render(vars = {}) {
    return this.template.replace(/\{(\w+)\}/g, (whole, key) => (key in vars ? String(vars[key] ?? "") : whole));
  }
}
const templates = new Map();
const PromptRegistry = {
  register(key, template) { templates.set(key, template); },
  get(key) {
    const t = templates.get(key);
    if (!t) throw new Error(`prompt ${key} is not registered`);
    return t;
  },
  has(key) { return templates.has(key); },
};
module.exports = { PromptTemplate, PromptRegistry };
