// The class store kept in the browser: the .npz bytes themselves in IndexedDB, one record per extractor
// fingerprint, so that a store always matches the model it was taught with.
const DB = "imprinting-demo";

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore("stores");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export async function loadBytes(key) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const req = db.transaction("stores").objectStore("stores").get(key);
    req.onsuccess = () => resolve(req.result ? new Uint8Array(req.result) : null);
    req.onerror = () => reject(req.error);
  });
}

export async function saveBytes(key, bytes) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction("stores", "readwrite");
    tx.objectStore("stores").put(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), key);
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}
