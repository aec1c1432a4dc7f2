import { runCases } from "./run-cases.js";
self.onmessage = async ({ data }) => {
  try {
    self.postMessage({ ok: true, ...(await runCases(data)) });
  } catch (e) {
    self.postMessage({ ok: false, error: String(e && e.stack || e) });
  }
};
