import { runCases } from "./run-cases.js";
// Stages go to the page as they are reached, so a start that never finishes says how far
// it got (index.html keeps them per try).
self.postMessage({ stage: "script loaded" });
self.onmessage = async ({ data }) => {
  try {
    self.postMessage({ ok: true, ...(await runCases(data, (stage) => self.postMessage({ stage }))) });
  } catch (e) {
    self.postMessage({ ok: false, error: String(e && e.stack || e) });
  }
};
