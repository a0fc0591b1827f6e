"use strict";
// Stand-in for the unpublished @hazeljs/eval (see ../README.md): re-exported by @hazeljs/agent, not used here.
function missing(name) {
  return () => { throw new Error(`${name} needs the real @hazeljs/eval`); };
}
module.exports = { trajectoryScore: missing("trajectoryScore"), toolCallAccuracy: missing("toolCallAccuracy") };
