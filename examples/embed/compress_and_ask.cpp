// Compress a text with a compressor folder, then decode from the compressed prompt with the
// frozen base: the text regenerated and, given a question, the answer. The calls `xcomp
// compress`, `xcomp regenerate` and `xcomp ask` make, through the installed library.
//
//   compress_and_ask BASE_DIR COMPRESSOR_DIR TEXT [QUESTION]
#include <xcomp/compressor.h>
#include <xcomp/error.h>
#include <xcomp/generate.h>
#include <xcomp/model_loader.h>
#include <xcomp/train.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::cerr << "usage: " << argv[0] << " BASE_DIR COMPRESSOR_DIR TEXT [QUESTION]\n";
    return 2;
  }
  try {
    torch::NoGradGuard no_grad;  // inference only
    xcomp::LoadedModel base = xcomp::load_model(argv[1]);  // f32 on the CPU by default
    const xcomp::Tokenizer& tok = *base.tokenizer;
    // The compressor attaches its LoRA to the base's modules; decoding from a compressed prompt
    // disables it, so the decoder is the unmodified base. (Several compressors over one base:
    // load each onto xcomp::share_weights(base.model), modules of its own over the same weights.)
    auto compressor = xcomp::Compressor::load(argv[2], base.model);
    // [1 text] -> kv: per-layer K/V of the memory tokens; icae: their embeddings.
    xcomp::CompressedPrompt prompt = compressor->compress({tok.encode(argv[3])});
    std::cout << "compressed " << prompt.source_tokens.at(0) << " tokens into "
              << prompt.memory_tokens << " (" << prompt.method << ", " << prompt.bytes()
              << " bytes)\n";

    // Regeneration as the paper decodes it: greedy, from BOS, as many tokens as the text had.
    xcomp::GenerationOptions greedy;
    greedy.stop_tokens = {tok.eos_id()};
    greedy.max_new_tokens = prompt.source_tokens.at(0);
    auto text = xcomp::generate_compressed(base.model, prompt, /*regenerate=*/true,
                                           {{tok.bos_id()}}, greedy);
    std::cout << "regenerated: " << xcomp::answer_text(tok, text.at(0)) << "\n";

    if (argc == 5) {  // QA: "Question: {q} Answer:" after the compressed context, 46 tokens at most
      greedy.max_new_tokens = 46;
      auto answer = xcomp::generate_compressed(base.model, prompt, /*regenerate=*/false,
                                               {xcomp::qa_prompt(tok, argv[4])}, greedy);
      std::cout << "answer: " << xcomp::answer_text(tok, answer.at(0)) << "\n";
    }
  } catch (const xcomp::Error& e) {  // names the file or field at fault
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
