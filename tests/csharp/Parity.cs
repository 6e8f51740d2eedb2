// Compiled with the LessPy sources (it reaches their internal functions) by tests/test_parity.py, which writes the
// questions and compares the answers with what Python says.
//   mono Parity.exe QUESTIONS ANSWERS
// QUESTIONS: UTF-8 lines "grow <payload bytes>", "key <field name>", "snake <C# name>".
// ANSWERS: one UTF-8 line per question: the question, a tab, what C# makes of it (Mapping.GrownSize, WireType.Key,
// WireType.SnakeCase).
using System;
using System.IO;
using System.Text;

namespace LessPy
{
    static class Parity
    {
        static int Main(string[] args)
        {
            var utf8 = new UTF8Encoding(false, true);
            var answers = new StringBuilder();
            foreach (string line in File.ReadAllLines(args[0], utf8))
            {
                int space = line.IndexOf(' ');
                string what = line.Substring(0, space), arg = line.Substring(space + 1);
                string answer;
                if (what == "grow") answer = Mapping.GrownSize(long.Parse(arg)).ToString();
                else if (what == "key") answer = WireType.Key(arg);
                else if (what == "snake") answer = WireType.SnakeCase(arg);
                else throw new ArgumentException("unknown question: " + line);
                answers.Append(line).Append('\t').Append(answer).Append('\n');
            }
            File.WriteAllText(args[1], answers.ToString(), utf8);
            return 0;
        }
    }
}
