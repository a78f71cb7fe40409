// Drives a running parrot server with the official `openai` npm package.
// Run by .ci/openai_npm_e2e.sh with OPENAI_BASE_URL and OPENAI_API_KEY set;
// the server serves testdata/stories260K as "stories" (alias
// "stories-alias") with a chat template. Any failed check exits non-zero.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const client = new OpenAI({ maxRetries: 0, timeout: 60_000 });
const model = 'stories';
const messages = [{ role: 'user', content: 'Tell me a story about a cat.' }];

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (err) {
    console.error(`FAIL ${name}: ${err?.stack ?? err}`);
    process.exitCode = 1;
  }
}

function checkUsage(usage) {
  assert.ok(usage, 'usage present');
  assert.ok(usage.prompt_tokens > 0, 'prompt_tokens > 0');
  assert.ok(usage.completion_tokens > 0, 'completion_tokens > 0');
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

await check('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    assert.equal(m.object, 'model');
    ids.push(m.id);
  }
  assert.deepEqual(ids, ['stories', 'stories-alias']);
  const one = await client.models.retrieve('stories-alias');
  assert.equal(one.id, 'stories-alias');
});

await check('chat.completions.create', async () => {
  const r = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, model);
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason), `finish_reason ${c.finish_reason}`);
  checkUsage(r.usage);
  assert.ok(r.usage.completion_tokens <= 12);
});

await check('chat.completions.create stream', async () => {
  const r = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.choices.length === 0) {
      usage = chunk.usage;
      continue;
    }
    assert.equal(finish, null, 'no choice chunk after the finishing one');
    const c = chunk.choices[0];
    if (chunks === 0) assert.equal(c.delta.role, 'assistant', 'first chunk carries the role');
    chunks++;
    text += c.delta.content ?? '';
    finish = c.finish_reason;
  }
  assert.ok(['stop', 'length'].includes(finish), `last finish_reason ${finish}`);
  assert.equal(text, r.choices[0].message.content, 'streamed text equals the non-streamed greedy text');
  checkUsage(usage);
  assert.deepEqual(usage, r.usage);
});

await check('completions.create and stream', async () => {
  const params = { model: 'stories-alias', prompt: 'Once upon a time', max_tokens: 10, temperature: 0 };
  const r = await client.completions.create(params);
  assert.equal(r.object, 'text_completion');
  assert.equal(r.model, 'stories-alias');
  checkUsage(r.usage);
  let text = '';
  for await (const chunk of await client.completions.create({ ...params, stream: true })) {
    for (const c of chunk.choices) text += c.text;
  }
  assert.equal(text, r.choices[0].text);
});

await check('404 unknown model', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages }),
    (err) => err instanceof OpenAI.NotFoundError && err.status === 404 && err.code === 'model_not_found',
  );
});

await check('401 wrong key', async () => {
  const bad = new OpenAI({ apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (err) => err instanceof OpenAI.AuthenticationError && err.status === 401);
});

await check('400 out-of-range parameter', async () => {
  await assert.rejects(
    client.chat.completions.create({ model, messages, temperature: 5 }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'temperature' && err.type === 'invalid_request_error',
  );
});
