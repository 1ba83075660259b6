/**
 * Minimal reproduction of the V8 abort the broker hit under load (see the comment at the top of
 * src/policy/cedar-engine.ts): a TurboFan function with an inlined JS->Wasm call returning an
 * externref is lazily deoptimized while that call is on the stack.
 *
 *   node --import tsx test/support/wasm-deopt-repro.ts               # Node 20: "Fatal error ... unreachable code"
 *   node --import tsx test/support/wasm-deopt-repro.ts --workaround  # loads cedar-engine.ts first: survives
 *
 * Exits 0 and prints "survived" when the process lives through the deopt.
 */
if (process.argv.includes('--workaround')) await import('../../src/policy/cedar-engine.js');

// (module (import "m" "cb" (func (param externref) (result externref)))
//         (func (export "f") (param externref) (result externref) local.get 0 call 0))
const bytes = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x06, 0x01, 0x60, 0x01, 0x6f, 0x01, 0x6f, 0x02, 0x08,
  0x01, 0x01, 0x6d, 0x02, 0x63, 0x62, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00, 0x07, 0x05, 0x01, 0x01, 0x66, 0x00,
  0x01, 0x0a, 0x08, 0x01, 0x06, 0x00, 0x20, 0x00, 0x10, 0x00, 0x0b,
]);

// The project's lib settings carry no WebAssembly types; this is all the script needs.
interface WasmApi {
  instantiate(
    bytes: Uint8Array,
    imports: object,
  ): Promise<{ instance: { exports: Record<string, unknown> } }>;
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let trigger = false;
const shared: { a: number; b?: number } = { a: 1 };
const { instance } = await wasmApi.instantiate(bytes, {
  m: {
    // Called from inside the wasm call: a map transition on `shared` invalidates `caller`'s code.
    cb: (x: unknown) => {
      if (trigger) shared.b = 2;
      return x;
    },
  },
});
const f = instance.exports.f as (x: { v: number }) => { v: number };

function caller(x: { v: number }): number {
  const r = f(x);
  return r.v + shared.a;
}

let sum = 0;
for (let i = 0; i < 200_000; i++) sum += caller({ v: i });
trigger = true;
sum += caller({ v: 1 });
console.log(`survived (${sum})`);
