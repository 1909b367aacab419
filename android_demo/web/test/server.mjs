// A static file server on 127.0.0.1 only, for the end-to-end test: the page from android_demo/web and a
// bundle directory under /bundle/. (Users can serve the page with `python3 -m http.server` instead.)
import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, resolve, sep } from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
  ".json": "application/json", ".wasm": "application/wasm", ".png": "image/png", ".onnx": "application/octet-stream",
};

export function serve(webRoot, bundleDir) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const [root, rel] = path.startsWith("/bundle/") ? [bundleDir, path.slice(8)] : [webRoot, path.slice(1) || "index.html"];
    const file = resolve(join(root, rel));
    let ok = file.startsWith(resolve(root) + sep);
    try { ok = ok && statSync(file).isFile(); } catch { ok = false; }
    if (!ok) { res.writeHead(404).end("not found"); return; }
    res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream", "cache-control": "no-store" });
    createReadStream(file).pipe(res);
  });
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r(server)));
}
