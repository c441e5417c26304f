// @fastify/http-proxy in front of the same upstream (the peer most Node users would pick).
import Fastify from 'fastify';
import proxy from '@fastify/http-proxy';

const port = Number(process.env.PORT ?? 18082);
const app = Fastify({ logger: false });
await app.register(proxy, { upstream: process.env.UPSTREAM ?? 'http://127.0.0.1:18090' });
await app.listen({ port, host: '127.0.0.1' });
console.log(`fastify proxy on ${port}`);
