"""A LiveKit voice agent with rtavatar's face, in one process (the shape for a CPU machine).

    python examples/livekit_agent.py dev        # needs LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET
                                                # and your STT / LLM / TTS plugins

The agent's speech goes to a QueueAudioOutput; an AvatarRunner reads it, feeds
RTAvatarVideoGenerator and publishes the face's video and the matching audio to the room.
For a separate avatar worker use RTAvatarSession on the agent side and
rtavatar.integrations.livekit.run_avatar_worker in the worker. This example needs a LiveKit
server, which the project's tests do not have: they run the generator against the framework's
own QueueAudioOutput instead (tests/test_integrations.py).
"""

from PIL import Image
from livekit import agents
from livekit.agents import Agent, AgentSession
from livekit.agents.voice.avatar import AvatarOptions, AvatarRunner, QueueAudioOutput

from rtavatar import Avatar
from rtavatar.integrations.livekit import RTAvatarVideoGenerator

AVATAR = Avatar.from_pretrained()  # one model for every room this worker serves
PHOTO = "me.jpg"  # frames come out at the photo's own size (paste-back)


async def entrypoint(ctx: agents.JobContext) -> None:
    await ctx.connect()
    session = AgentSession()  # add your stt= / llm= / tts= / vad= here
    audio = QueueAudioOutput(sample_rate=24000)
    session.output.audio = audio
    face = RTAvatarVideoGenerator(AVATAR, PHOTO, sample_rate=24000)
    width, height = Image.open(PHOTO).size
    runner = AvatarRunner(ctx.room, audio_recv=audio, video_gen=face,
                          options=AvatarOptions(video_width=width, video_height=height, video_fps=25,
                                                audio_sample_rate=24000, audio_channels=1))
    await runner.start()
    await session.start(agent=Agent(instructions="You are a friendly assistant with a face."), room=ctx.room)


if __name__ == "__main__":
    agents.cli.run_app(agents.WorkerOptions(entrypoint_fnc=entrypoint))
