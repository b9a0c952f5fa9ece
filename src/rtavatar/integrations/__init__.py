"""rtavatar as the face of a voice agent: `pipecat` (pip install 'rtavatar[pipecat]') and
`livekit` (pip install 'rtavatar[livekit]'). Both wrap `core.AgentFace`; importing this
package needs neither framework."""
