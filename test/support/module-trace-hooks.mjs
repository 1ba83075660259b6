/**
 * Module hooks for loaded-packages.ts: posts the URL of every module resolved from now on to the
 * port it was registered with (module.register's `data`).
 */
let port;

export function initialize(data) {
  port = data.port;
}

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  port.postMessage(resolved.url);
  return resolved;
}
