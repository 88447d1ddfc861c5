// The official `openai` npm client (pinned in package-lock.json) against hscd's OpenAI-compatible
// front, for tests/integration/test_openai.py. One call per run; everything it sees goes to
// stdout as JSON lines:
//   {"type":"chunk","t":MS,"chunk":{...}}   each streamed chunk, t = performance.now()
//   {"type":"end"}                          the stream ended ([DONE])
//   {"type":"result","result":{...}}        a non-streamed answer, or the model list
//   {"type":"aborted"}                      --abort-after N: aborted after N chunks
//   {"type":"error","name":..,"status":..,"message":..,"code":..,"errtype":..,"apiError":bool}
//
//   node openai_client.mjs --base URL --op chat|completions|models [--params JSON]
//        [--api-key KEY] [--abort-after N] [--timeout S]
// With --abort-after, it aborts the request after N chunks and then stays alive until stdin
// reaches end of file, so that the test sees the responder stop because of the abort alone.
import OpenAI from 'openai';

const args = {};
for (let i = 2; i < process.argv.length; i += 2)
    args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const client = new OpenAI({
    baseURL: args.base + '/v1',
    apiKey: args['api-key'] || 'not-needed',
    maxRetries: 0,
    timeout: Number(args.timeout || 60) * 1000,
});

async function waitStdinEnd() {
    process.stdin.resume();
    await new Promise((resolve) => process.stdin.on('end', resolve));
}

async function main() {
    if (args.op === 'models') {
        const page = await client.models.list();
        out({ type: 'result', result: page.data });
        return;
    }
    const api = args.op === 'chat' ? client.chat.completions : client.completions;
    const params = JSON.parse(args.params || '{}');
    if (!params.stream) {
        out({ type: 'result', result: await api.create(params) });
        return;
    }
    const stream = await api.create(params);
    const abortAfter = Number(args['abort-after'] || 0);
    let n = 0;
    for await (const chunk of stream) {
        out({ type: 'chunk', t: performance.now(), chunk });
        if (abortAfter && ++n >= abortAfter) {
            stream.controller.abort();
            out({ type: 'aborted' });
            await waitStdinEnd();
            return;
        }
    }
    out({ type: 'end' });
}

try {
    await main();
} catch (e) {
    out({
        type: 'error',
        name: e.constructor.name,
        status: e.status ?? null,
        message: e.message,
        code: e.code ?? null,
        errtype: e.type ?? null,
        apiError: e instanceof OpenAI.APIError,
    });
}
